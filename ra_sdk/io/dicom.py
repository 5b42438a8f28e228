"""DICOM files with pydicom: recognising them, reading them safely (a deflated dataset is
measured before it is inflated), ordering a series, and decoding a series into one stack
(the pixel step is :mod:`ra_sdk.io.dicom_pixels`)."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AccessError, CorruptFileError, ReadError, TooLargeError
from .dicom_pixels import (
    _PIXEL_KEYWORDS,
    DEFLATED,
    ID_KEYWORDS,
    MAX_PIXELS,
    _first_line,
    decode_dataset,
)
from .limits import BYTES_PER_PIXEL, open_checked
from .study import Slices

__all__ = ["DEFLATED", "ID_KEYWORDS", "MAX_PIXELS", "dcmread", "decode", "decode_dataset", "looks_like_dicom", "read_header", "read_series", "slice_sort_key"]

log = logging.getLogger(__name__)

#: a deflated dataset inflating to more than this (or a quarter of the study's budget) is refused
MAX_INFLATED_BYTES = 1 << 30
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: elements that make a preamble-less file a DICOM dataset
_DICOM_MARKERS = ("SOPClassUID", "PixelData", "Modality", "StudyInstanceUID", "SeriesInstanceUID")


def looks_like_dicom(path: Path) -> bool:
    """True for files with the DICM preamble or a DICOM file extension."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"




def dcmread(path: Path, *, stop_before_pixels: bool = False, max_bytes: int | None = None) -> Any:
    """Read a DICOM file; files without the 128-byte preamble (older or raw datasets)
    are read too when they parse into DICOM elements. Raises ReadError subclasses."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    st = open_checked(path)
    try:
        _check_deflated(path, st.st_size, max_bytes)
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if not any(k in ds for k in _DICOM_MARKERS):
                raise CorruptFileError(path, "not a DICOM file (no preamble and no DICOM elements)") from None
            _infer_transfer_syntax(ds)
            return ds
    except ReadError:
        raise
    except PermissionError:
        raise AccessError(path, "permission denied") from None
    except MemoryError:
        raise TooLargeError(path, "the dataset does not fit in memory") from None
    except Exception as err:
        raise CorruptFileError(path, f"cannot parse DICOM file ({type(err).__name__}: {_first_line(err)})") from None


def _check_deflated(path: Path, size: int, max_bytes: int | None = None) -> None:
    """A Deflated Explicit VR dataset is inflated whole when pydicom reads it: measure the
    inflated size first, in bounded chunks (nothing is kept), and refuse one that would
    not fit a quarter of the study's budget (its pixels then cost about four times their
    stored bytes), or MAX_INFLATED_BYTES."""
    from pydicom.filereader import read_file_meta_info

    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return
    try:
        meta = read_file_meta_info(path)
    except Exception:
        return
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED or "FileMetaInformationGroupLength" not in meta:
        return
    start = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    limit = MAX_INFLATED_BYTES if max_bytes is None else min(MAX_INFLATED_BYTES, max(1 << 20, max_bytes // 4))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while chunk := fh.read(1 << 16):
            try:
                total += len(inflater.decompress(chunk, limit + 1 - total))
                while inflater.unconsumed_tail and total <= limit:
                    total += len(inflater.decompress(inflater.unconsumed_tail, limit + 1 - total))
            except zlib.error as err:
                raise CorruptFileError(path, f"deflated dataset does not inflate ({err})") from None
            if total > limit:
                raise TooLargeError(path, f"deflated dataset of {size:,} bytes inflates beyond {limit / 2**20:,.0f} MB, more than this study's share of the memory budget allows (a decompression bomb?)")
            if inflater.eof:
                return


def _infer_transfer_syntax(ds: Any) -> None:
    """A dataset without file meta information is uncompressed; record how it was encoded."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )


def read_header(path: Path) -> Any:
    """Read a DICOM header without pixel data; raises ReadError with a one-line reason."""
    return dcmread(path, stop_before_pixels=True)



def decode(path: Path, *, apply_voi: bool = True, max_bytes: int | None = None) -> Slices:
    """Decode one DICOM file into (frames, H, W) float32 presentation-ready values.

    Raises:
        NotAnImageError: the file has no pixel data (SR, RT plan, KO...).
        UnsupportedCodecError: no installed decoder handles its transfer syntax.
        TooLargeError: the image would not fit its share of the memory budget.
        CorruptFileError: truncated or malformed file.
    """
    path = Path(path)
    return decode_dataset(dcmread(path, max_bytes=max_bytes), path, apply_voi=apply_voi, max_bytes=max_bytes)




def slice_sort_key(ds: Any, fallback: str) -> tuple[float, float, str]:
    """Position along the slice normal (from orientation and position), then instance number."""
    pos = ds.get("ImagePositionPatient")
    ori = ds.get("ImageOrientationPatient")
    inst = ds.get("InstanceNumber")
    try:
        inst_f = float(inst) if inst is not None else 0.0
    except (TypeError, ValueError):
        inst_f = 0.0
    if pos is not None and ori is not None and len(pos) == 3 and len(ori) == 6:
        r, c = np.array(ori[:3], float), np.array(ori[3:], float)
        return float(np.dot(np.cross(r, c), np.array(pos, float))), inst_f, fallback
    return 0.0, inst_f, fallback


def read_series(paths: Sequence[Path], *, apply_voi: bool = True, max_bytes: int | None = None) -> Slices:
    """Decode the files of one series (already in slice order) into one stack.

    Files that fail are left out with a note naming the first reason, as long as one file
    decodes; ``meta["headers"]`` holds each decoded file's dataset without its pixel data
    (what DICOM outputs need; each keeps its ``filename``).
    """
    parts, headers, failures = [], [], []
    budget = max_bytes
    for p in paths:
        try:
            ds = dcmread(p, max_bytes=budget)
            sl = decode_dataset(ds, Path(p), apply_voi=apply_voi, max_bytes=budget)
        except TooLargeError:
            raise  # the series as a whole is over budget
        except ReadError as err:
            failures.append(err)
            continue
        for kw in _PIXEL_KEYWORDS:
            if kw in ds:
                del ds[kw]
        parts.append(sl)
        headers.append(ds)
        if budget is not None:
            budget -= sl.pixels.size * BYTES_PER_PIXEL
    if not parts:
        raise failures[0]
    shapes = {p.pixels.shape[1:] for p in parts}
    if len(shapes) > 1:  # discovery splits series by size; this is a header that lied
        raise ReadError(paths[0], f"series mixes image sizes {sorted(shapes)}; cannot stack its slices")
    notes = sorted({n for p in parts for n in p.notes})
    if failures:
        notes.append(f"{len(failures)} of {len(paths)} files not screened ({failures[0].kind}: {failures[0].reason})")
    meta = dict(parts[0].meta)
    meta["n_files"] = len(parts)
    meta["headers"] = headers
    return Slices(pixels=np.concatenate([p.pixels for p in parts]), notes=notes, meta=meta)
