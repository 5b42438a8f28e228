"""NIfTI volumes (nibabel) as stacks of axial slices in one fixed orientation.

The volume is reoriented to RAS+ (``nibabel.as_closest_canonical``); axial slice k is
then shown the way DICOM axial images are: rows anterior -> posterior, columns patient
right -> left (radiological convention), slices ordered inferior -> superior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, ReadError, TooLargeError, UnsupportedFormatError
from .limits import check_pixels, open_checked
from .study import Slices

MAX_VOXELS = 1024 * 1024 * 1024


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def ras_to_axial_slices(data: np.ndarray) -> np.ndarray:
    """(X, Y, Z) RAS+ array -> (Z, Y', X') stack: rows A->P, columns R->L."""
    return np.ascontiguousarray(np.transpose(data, (2, 1, 0))[:, ::-1, ::-1])


def read_nifti(path: Path, *, max_bytes: int | None = None) -> Slices:
    """Read a 3-D NIfTI volume as (Z, H, W) float32 axial slices (see module docstring).

    The shape, data type and affine are checked from the header before any voxel is read.

    Raises:
        UnsupportedFormatError: 4-D (or higher) volumes, RGB or complex voxels.
        TooLargeError: a volume above ``max_bytes`` to decode.
        CorruptFileError: unreadable, truncated or empty files, a non-finite affine.
    """
    import nibabel as nib

    path = Path(path)
    open_checked(path)
    try:
        img: Any = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        dtype = np.dtype(img.get_data_dtype())
        affine = np.asarray(img.affine, np.float64)
    except ReadError:
        raise
    except Exception as err:  # nibabel's header errors (HeaderDataError, ImageFileError...), gzip, zlib
        raise CorruptFileError(path, f"cannot read NIfTI header ({type(err).__name__}: {_first(err)})") from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise UnsupportedFormatError(path, f"{len(shape)}-D NIfTI of shape {shape} is not supported; split it into 3-D volumes first")
    if len(shape) < 2 or min(shape) <= 0:
        raise UnsupportedFormatError(path, f"NIfTI of shape {shape} holds no 2-D image")
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise UnsupportedFormatError(path, f"NIfTI voxels of type {dtype} (RGB or complex) are not supported; convert to a scalar volume")
    n = int(np.prod(shape))
    if n > MAX_VOXELS:
        raise TooLargeError(path, f"volume of shape {shape} is larger than ra-sdk decodes ({MAX_VOXELS:,} voxels)")
    check_pixels(path, n, max_bytes, f"volume of shape {shape}")
    if not np.isfinite(affine).all():
        raise CorruptFileError(path, "NIfTI affine holds non-finite values (NaN or inf): the orientation is unknown")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape + (1,) * (3 - len(shape)))
        canon = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
        data = np.asarray(canon.dataobj, dtype=np.float32)
    except Exception as err:  # truncated data, gzip/zlib errors, a degenerate affine
        raise CorruptFileError(path, f"cannot read NIfTI voxel data ({type(err).__name__}: {_first(err)})") from None
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


def _first(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] if text else type(err).__name__
