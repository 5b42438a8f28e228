"""Pictures of one screened study in its output folder: ``previews/<study>.jpg`` (what the
HTML report embeds) and, with ``--save-maps``, ``maps/<study>.npy`` + ``.png``. Each is the
driving slice as input | pseudo-healthy reconstruction | heatmap overlay. Written
atomically: a full disk never leaves half a picture."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..io.files import atomic_write
from ..results import StudyResult, safe_name
from .overlay import driving_index, encode_jpeg, encode_png, preview_panels

PREVIEWS = "previews"
MAPS = "maps"


def preview_path(out: Path, study: str) -> Path:
    return Path(out) / PREVIEWS / f"{safe_name(study)}.jpg"


def panels(r: StudyResult, pixel_threshold: float) -> np.ndarray:
    """(H, 3W, 3) RGB of the slice that drove the study's score."""
    if r.maps is None or r.images is None or r.recons is None:
        raise ValueError(f"{r.study}: a preview needs the maps, inputs and reconstructions (screen with return_maps)")
    k = driving_index(r.slices, r.max_slice, r.maps)
    return preview_panels(r.images[k], r.recons[k], r.maps[k], pixel_threshold)


def write_preview(out: Path, r: StudyResult, pixel_threshold: float) -> Path:
    """``previews/<study>.jpg``, the small picture the HTML report embeds."""
    path = preview_path(out, r.study)
    path.parent.mkdir(exist_ok=True)
    return atomic_write(path, encode_jpeg(panels(r, pixel_threshold)))


def save_maps(out: Path, r: StudyResult, pixel_threshold: float = float("nan")) -> None:
    """Raw maps of the screened slices (``maps/<study>.npy``, float32) and a PNG of the
    driving slice."""
    assert r.maps is not None
    folder = Path(out) / MAPS
    folder.mkdir(exist_ok=True)
    name = safe_name(r.study)
    buf = io.BytesIO()
    np.save(buf, r.maps.astype(np.float32), allow_pickle=False)
    atomic_write(folder / f"{name}.npy", buf.getvalue())
    atomic_write(folder / f"{name}.png", encode_png(panels(r, pixel_threshold)))
