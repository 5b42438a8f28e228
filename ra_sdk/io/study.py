"""What a study is: the unit a screening run scores and reports once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Study:
    """A DICOM series, a NIfTI volume, or a single 2-D image file.

    Attributes:
        id: stable identifier, unique within one discovery (relative path or series UID).
        kind: "dicom", "nifti", "image", or "unreadable" (a file or folder discovery could
            not open: reading it raises ``error``, so it still gets a row).
        paths: the files the study is made of, in slice order for DICOM series.
        error: why an "unreadable" study cannot be read.
    """

    id: str
    kind: str
    paths: tuple[Path, ...]
    error: str = ""


@dataclass
class Slices:
    """Decoded pixels of one study.

    Attributes:
        pixels: (N, H, W) float32 intensities after modality LUT / VOI (DICOM) or as
            stored (NIfTI, raster); N = 1 for a single image.
        notes: human-readable remarks about the decode (colour converted, frames...).
        meta: format-specific metadata (DICOM UIDs and identifiers, NIfTI affine...).
    """

    pixels: np.ndarray
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
