"""Size limits checked before anything is decoded: from file sizes, image headers and
zip directories, never by decoding first and looking afterwards.

A study's decode cost is estimated as its pixel count times :data:`BYTES_PER_PIXEL` (the
stored values, the float32 stack, and the per-slice copies preprocessing makes) and must
fit its share of the memory budget: the budget divided by the decode threads, since that
many studies decode at once.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from ..errors import AccessError, CorruptFileError, ReadError, TooLargeError

#: the default memory budget of the decode threads together (``--memory-budget``)
DEFAULT_BUDGET_BYTES = 4 << 30
#: bytes one decoded pixel costs until its study is preprocessed (stored value <= 4,
#: float32 stack 4, temporaries of LUTs and reorientation 4)
BYTES_PER_PIXEL = 12
#: no study file larger than this is opened (an uncompressed 4 GiB file is no single image)
MAX_FILE_BYTES = 4 << 30


def study_budget(budget_bytes: int = DEFAULT_BUDGET_BYTES, workers: int = 1) -> int:
    """Bytes one study may cost when ``workers`` studies decode at once."""
    return max(1 << 20, int(budget_bytes) // max(1, int(workers)))


def check_pixels(path: str | Path, n_pixels: int, max_bytes: int | None, what: str) -> None:
    """Refuse a study of ``n_pixels`` (as its header says) above ``max_bytes``."""
    if max_bytes is not None and n_pixels * BYTES_PER_PIXEL > max_bytes:
        need = n_pixels * BYTES_PER_PIXEL / 2**20
        raise TooLargeError(path, f"{what} would take about {need:,.0f} MB to decode, above this study's share of the memory budget ({max_bytes / 2**20:,.0f} MB); raise --memory-budget or lower --workers")


def open_checked(path: str | Path) -> os.stat_result:
    """stat a study file: it must be a readable regular file within MAX_FILE_BYTES.
    (A FIFO or a device would block or never end; a folder is not a file.)"""
    path = Path(path)
    try:
        st = os.stat(path)
    except PermissionError:
        raise AccessError(path, "permission denied") from None
    except FileNotFoundError:
        raise ReadError(path, "no such file") from None
    except OSError as err:
        raise ReadError(path, f"cannot open file ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AccessError(path, "not a regular file (a folder, FIFO or device)")
    if st.st_size == 0:
        raise CorruptFileError(path, "empty file")
    if st.st_size > MAX_FILE_BYTES:
        raise TooLargeError(path, f"file of {st.st_size / 2**30:.1f} GiB is larger than any single study ra-sdk screens ({MAX_FILE_BYTES / 2**30:.0f} GiB)")
    if not os.access(path, os.R_OK):
        raise AccessError(path, "permission denied")
    return st


def raster_header(head: bytes) -> tuple[int, int, int] | None:
    """(width, height, pages) from the first bytes of a PNG, JPEG, TIFF or BMP file, or
    None when the header does not say (the decoder then decides). ``pages`` is the
    number of TIFF directories (1 for other formats)."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return w, h, 1
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h), 1
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h, 1
        i += 2 + length
    return None


def tiff_pages(path: Path, max_pages: int = 4096) -> list[tuple[int, int]] | None:
    """(width, height) of every directory (page) of a TIFF file, from its IFDs, or None
    when the file is not a TIFF. Raises CorruptFileError on a broken directory chain."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if head[:4] not in (b"II*\x00", b"MM\x00*"):
            return None
        e = "<" if head[:2] == b"II" else ">"
        size = os.fstat(fh.fileno()).st_size
        (off,) = struct.unpack(e + "I", head[4:8])
        pages: list[tuple[int, int]] = []
        seen: set[int] = set()
        while off:
            if off in seen or off + 2 > size or len(pages) >= max_pages:
                raise CorruptFileError(path, "TIFF directory chain is broken or loops")
            seen.add(off)
            fh.seek(off)
            (n,) = struct.unpack(e + "H", fh.read(2))
            entries = fh.read(12 * n)
            if len(entries) < 12 * n:
                raise CorruptFileError(path, "TIFF directory is truncated")
            w = h = 0
            for k in range(n):
                tag, typ, _count = struct.unpack(e + "HHI", entries[12 * k : 12 * k + 8])
                raw = entries[12 * k + 8 : 12 * k + 12]
                val = struct.unpack(e + "H", raw[:2])[0] if typ == 3 else struct.unpack(e + "I", raw)[0]
                if tag == 256:
                    w = val
                elif tag == 257:
                    h = val
            pages.append((w, h))
            nxt = fh.read(4)
            if len(nxt) < 4:
                raise CorruptFileError(path, "TIFF directory is truncated")
            (off,) = struct.unpack(e + "I", nxt)
        return pages
