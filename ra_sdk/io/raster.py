"""PNG / JPEG / TIFF / BMP images (8 or 16 bit, grey or colour) through OpenCV.

Sizes are read from the file's header (PNG IHDR, JPEG SOF, TIFF directories, BMP header)
and checked before OpenCV decodes anything. A multi-page TIFF whose pages share a size is
a stack of slices; otherwise its first page is screened, with a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, TooLargeError
from .limits import check_pixels, open_checked, raster_header, tiff_pages
from .study import Slices

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: the largest single image decoded (pixels), whatever the budget
MAX_PIXELS = 16384 * 16384


def is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def _check_size(path: Path, w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise CorruptFileError(path, f"header gives an invalid image size {w}x{h}")
    if w * h > MAX_PIXELS:
        raise TooLargeError(path, f"image of {w}x{h} pixels (from its header) is larger than ra-sdk decodes ({MAX_PIXELS:,} pixels)")


def read_raster(path: Path, *, max_bytes: int | None = None) -> Slices:
    """Read a 2-D image (or a TIFF stack) as (N, H, W) float32 in its stored units
    (0..255 or 0..65535).

    Colour images are converted to grey (ITU-R BT.601 luma), with a note; alpha is dropped.
    """
    import cv2

    path = Path(path)
    open_checked(path)
    pages = tiff_pages(path)
    if pages:
        for w, h in pages:
            _check_size(path, w, h)
        check_pixels(path, sum(w * h for w, h in pages), max_bytes, f"TIFF of {len(pages)} page(s)")
    else:
        with open(path, "rb") as fh:
            head = fh.read(256 * 1024)
        size = raster_header(head)
        if size is None:  # only formats whose size can be read before decoding are decoded
            raise CorruptFileError(path, "not a PNG, JPEG, TIFF or BMP image (no image header ra-sdk reads; truncated or another format)")
        _check_size(path, size[0], size[1])
        check_pixels(path, size[0] * size[1], max_bytes, f"{size[0]}x{size[1]} image")
    buf = np.fromfile(path, dtype=np.uint8)
    try:
        if pages and len(pages) > 1:
            ok, imgs = cv2.imdecodemulti(buf, cv2.IMREAD_UNCHANGED)
            imgs = list(imgs) if ok else []
        else:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            imgs = [] if img is None else [img]
    except cv2.error as err:  # OpenCV's own checks (its pixel limit, a codec's assertion)
        raise CorruptFileError(path, f"cannot decode {path.suffix.lstrip('.').upper() or 'image'} data ({' '.join(str(err).split())[:200]})") from None
    if not imgs:
        raise CorruptFileError(path, f"cannot decode {path.suffix.lstrip('.').upper() or 'image'} data (truncated or not an image)")
    notes: list[str] = []
    grey = [_to_grey(im, notes) for im in imgs]
    if len(grey) > 1:
        if len({g.shape for g in grey}) == 1:
            notes.append(f"multi-page TIFF: {len(grey)} pages screened as slices")
        else:
            notes.append(f"TIFF has {len(grey)} pages of different sizes; page 1 screened")
            grey = grey[:1]
    out = np.stack([g.astype(np.float32) for g in grey])
    if not np.isfinite(out).all():
        raise CorruptFileError(path, "image holds non-finite values")
    return Slices(pixels=out, notes=sorted(set(notes), key=notes.index), meta={"bit_depth": int(imgs[0].dtype.itemsize * 8)})


def _to_grey(img: np.ndarray, notes: list[str]) -> np.ndarray:
    import cv2

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
    return img
