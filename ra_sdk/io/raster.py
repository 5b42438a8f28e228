"""PNG / JPEG / TIFF images (8 or 16 bit, grey or colour) through OpenCV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, ReadError
from .study import Slices

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_PIXELS = 16384 * 16384


def is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def read_raster(path: Path) -> Slices:
    """Read a 2-D image as (1, H, W) float32 in its stored units (0..255 or 0..65535).

    Colour images are converted to grey (ITU-R BT.601 luma), with a note; alpha is dropped.
    """
    import cv2

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ReadError(path, f"cannot open file ({err.strerror})") from None
    if size == 0:
        raise CorruptFileError(path, "empty file")
    buf = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CorruptFileError(path, f"cannot decode {path.suffix.lstrip('.').upper() or 'image'} data (truncated or not an image)")
    notes: list[str] = []
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[..., :3]
            notes.append("alpha channel dropped")
        if img.shape[2] == 3:
            if not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])):
                notes.append("colour converted to grey")
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.dtype in (np.uint8, np.uint16, np.float32) else img.mean(axis=2)
        else:
            img = img[..., 0]
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ReadError(path, f"image too large to screen: {img.shape[0]}x{img.shape[1]}")
    out = img.astype(np.float32)
    if not np.isfinite(out).all():
        raise CorruptFileError(path, "image holds non-finite values")
    return Slices(pixels=out[None], notes=notes, meta={"bit_depth": int(img.dtype.itemsize * 8)})
