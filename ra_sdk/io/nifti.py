"""NIfTI volumes (nibabel) as stacks of axial slices in one fixed orientation.

The volume is reoriented to RAS+ (``nibabel.as_closest_canonical``); axial slice k is
then shown the way DICOM axial images are: rows anterior -> posterior, columns patient
right -> left (radiological convention), slices ordered inferior -> superior.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, ReadError, UnsupportedFormatError
from .study import Slices

MAX_VOXELS = 1024 * 1024 * 1024


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def ras_to_axial_slices(data: np.ndarray) -> np.ndarray:
    """(X, Y, Z) RAS+ array -> (Z, Y', X') stack: rows A->P, columns R->L."""
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0))[:, ::-1, ::-1])


def read_nifti(path: Path) -> Slices:
    """Read a 3-D NIfTI volume as (Z, H, W) float32 axial slices (see module docstring).

    Raises:
        UnsupportedFormatError: 4-D (or higher) volumes with more than one volume.
        CorruptFileError: unreadable, truncated or empty files.
    """
    import nibabel as nib

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise CorruptFileError(path, "empty file")
        img: Any = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
    except ReadError:
        raise
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, gzip.BadGzipFile, zlib.error) as err:
        raise CorruptFileError(path, f"cannot read NIfTI ({type(err).__name__}: {err})") from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise UnsupportedFormatError(
            path, f"{len(shape)}-D NIfTI of shape {shape} is not supported; split it into 3-D volumes first"
        )
    if len(shape) < 2 or min(shape) <= 0:
        raise UnsupportedFormatError(path, f"NIfTI of shape {shape} holds no 2-D image")
    if int(np.prod(shape)) > MAX_VOXELS:
        raise ReadError(path, f"volume too large to screen: shape {shape}")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape + (1,) * (3 - len(shape)))
        canon = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
        data = np.asarray(canon.dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError, gzip.BadGzipFile, zlib.error) as err:
        raise CorruptFileError(path, f"cannot read NIfTI voxel data ({type(err).__name__}: {err})") from None
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
        notes = ["non-finite voxels set to 0"]
    else:
        notes = []
    return Slices(
        pixels=ras_to_axial_slices(data),
        notes=notes,
        meta={"affine": np.asarray(canon.affine).tolist(), "shape": list(data.shape), "orientation": "RAS"},
    )
