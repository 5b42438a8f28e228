"""DICOM pixel data to presentation values, for a dataset already read.

Order of operations follows PS3.3 C.11: stored values -> modality LUT (rescale slope and
intercept, or a Modality LUT Sequence) -> VOI LUT or window -> presentation; PALETTE
COLOR through its palette; MONOCHROME1 inverted so that larger always means brighter.
Every size is checked from the header before pydicom decodes anything.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    CorruptFileError,
    NotAnImageError,
    ReadError,
    TooLargeError,
    UnsupportedCodecError,
)
from .limits import check_pixels
from .study import Slices

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: identifiers copied into results and derived objects (nothing else leaves the source)
ID_KEYWORDS = (
    "PatientID",
    "PatientName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "StudyDate",
    "AccessionNumber",
    "SeriesNumber",
    "InstanceNumber",
)
#: the largest image we agree to decode (frames x rows x columns), whatever the budget
MAX_PIXELS = 512 * 4096 * 4096
DEFLATED = "1.2.840.10008.1.2.1.99"
#: uncompressed transfer syntaxes: the pixel data length must match the header
_NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", DEFLATED)
#: what a damaged file can make pydicom raise while parsing or decoding
_PARSE_ERRORS = (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, struct.error)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _describe(ds: Any) -> str:
    sop = ds.get("SOPClassUID")
    name = getattr(sop, "name", None) or str(sop or "unknown SOP class")
    return f"{name} (Modality {ds.get('Modality', '?')})"



def decode_dataset(ds: Any, path: Path, *, apply_voi: bool = True, max_bytes: int | None = None) -> Slices:
    """:func:`decode` for a dataset already read (with its pixel data) from ``path``.
    Every size is checked from the header before the pixel data is decoded."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        if not _has_pixels(ds):
            if rows and cols:
                raise CorruptFileError(path, f"truncated or damaged: the header describes a {rows}x{cols} image but the file holds no pixel data")
            raise NotAnImageError(path, f"not an image: {_describe(ds)} has no pixel data")
    except ReadError:
        raise
    except _PARSE_ERRORS as err:
        raise CorruptFileError(path, f"invalid image header ({type(err).__name__}: {_first_line(err)})") from None
    if rows <= 0 or cols <= 0 or frames <= 0:
        missing = [k for k in ("Rows", "Columns") if k not in ds]
        why = f"the header has no {' or '.join(missing)}" if missing else f"invalid size {frames} frame(s) of {rows}x{cols}"
        raise CorruptFileError(path, f"pixel data without a usable image size: {why}")
    if rows * cols * frames > MAX_PIXELS:
        raise TooLargeError(path, f"image too large to screen: {frames} frame(s) of {rows}x{cols}")
    check_pixels(path, rows * cols * frames * max(1, spp), max_bytes, f"{frames} frame(s) of {rows}x{cols}")

    meta_info = getattr(ds, "file_meta", None)
    tsuid = meta_info.get("TransferSyntaxUID") if meta_info is not None else None
    if str(tsuid or "") in _NATIVE and "PixelData" in ds:
        _check_native_length(ds, path, rows, cols, frames, spp, bits)
    try:
        arr = ds.pixel_array
    except ReadError:
        raise
    except MemoryError:
        raise TooLargeError(path, "the pixel data does not fit in memory") from None
    except Exception as err:
        raise _decode_failure(path, tsuid, err) from None

    try:
        return _to_slices(path, np.asarray(arr), ds, frames, apply_voi, str(tsuid or ""))
    except ReadError:
        raise
    except _PARSE_ERRORS as err:
        raise CorruptFileError(path, f"cannot apply LUTs ({type(err).__name__}: {_first_line(err)})") from None


def _check_native_length(ds: Any, path: Path, rows: int, cols: int, frames: int, spp: int, bits: int) -> None:
    """Uncompressed pixel data must be as long as the header says: a file whose
    BitsAllocated, Rows, Columns or NumberOfFrames do not match its data is refused,
    never reshaped into a wrong picture."""
    try:
        actual = len(ds.PixelData)
    except Exception:
        return
    expected = rows * cols * frames * spp * bits // 8 if bits % 8 == 0 else (rows * cols * frames * spp * bits + 7) // 8
    if actual < expected:
        raise CorruptFileError(path, f"truncated pixel data: {actual:,} bytes, the header describes {expected:,} ({frames} frame(s) of {rows}x{cols}, {spp} sample(s), {bits} bits allocated)")
    if actual - expected > max(expected // 2, 1):
        raise CorruptFileError(path, f"pixel data holds {actual:,} bytes but the header describes {expected:,} ({frames} frame(s) of {rows}x{cols}, {spp} sample(s), {bits} bits allocated): header and data disagree")


def _decode_failure(path: Path, tsuid: Any, err: BaseException) -> ReadError:
    """The one-line reason a pixel decode failed, keeping pydicom's own cause: no decoder
    for the transfer syntax here, a decoder that does not support this encoding, or data
    the decoders cannot read."""
    ts = f"{getattr(tsuid, 'name', tsuid)} ({tsuid})" if tsuid else "unknown transfer syntax"
    cause = " ".join(str(err).split()) or type(err).__name__
    cause = cause.replace("Unable to decode as exceptions were raised by all available plugins: ", "")[:400]
    available = True
    missing = ""
    if tsuid:
        try:
            from pydicom.pixels import get_decoder

            dec = get_decoder(tsuid)
            available = bool(dec.is_available)
            missing = "; ".join(dec.missing_dependencies)
        except Exception:
            available = False
    if not available:
        return UnsupportedCodecError(path, f"no installed decoder handles {ts}" + (f" (needs {missing})" if missing else "") + f": {cause}")
    if "not support" in cause.lower() or "unsupported" in cause.lower():
        return UnsupportedCodecError(path, f"the installed decoders do not support this {ts} encoding: {cause}")
    return CorruptFileError(path, f"cannot decode {ts} pixel data: {cause}")


def _to_slices(path: Path, arr: np.ndarray, ds: Any, frames: int, apply_voi: bool, tsuid: str) -> Slices:
    notes: list[str] = []
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[None]  # (1, H, W[, 3])
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = np.asarray(apply_color_lut(arr, ds))  # indices -> RGB through the palette
        spp = 3
        notes.append("palette colour applied")
    if spp > 1 or arr.ndim == 4:
        # pydicom returns RGB (YBR is converted by default); ITU-R BT.601 luma
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        notes.append(f"colour ({ds.get('PhotometricInterpretation', 'RGB')}) converted to grey")
        out = arr.astype(np.float32)
    else:
        out = _grey_to_presentation(arr, ds, apply_voi, notes)
    if frames > 1:
        notes.append(f"multi-frame: {frames} frames")
    if not np.isfinite(out).all():
        raise CorruptFileError(path, "pixel data holds non-finite values")
    meta: dict[str, Any] = {k: str(ds.get(k)) for k in ID_KEYWORDS if k in ds}
    meta["TransferSyntaxUID"] = tsuid
    pos = ds.get("ImagePositionPatient")
    if pos is not None:
        meta["ImagePositionPatient"] = [float(v) for v in pos]
    return Slices(pixels=out, notes=notes, meta=meta)


def _grey_to_presentation(arr: np.ndarray, ds: Any, apply_voi: bool, notes: list[str]) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    out = np.empty(arr.shape, np.float32)
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    for i in range(arr.shape[0]):
        frame = apply_modality_lut(arr[i], ds)
        if apply_voi and has_voi:
            frame = apply_voi_lut(frame, ds, prefer_lut=True)
        out[i] = np.asarray(frame, dtype=np.float32)
    if apply_voi and has_voi:
        notes.append("VOI LUT/window applied")
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        lo, hi = float(out.min()), float(out.max())
        out = (hi + lo) - out
        notes.append("MONOCHROME1 inverted")
    return out
