"""DICOM reading with pydicom.

Order of operations follows PS3.3 C.11: stored values -> modality LUT (rescale slope and
intercept, or a Modality LUT Sequence) -> VOI LUT or window -> presentation; MONOCHROME1
is inverted so that larger always means brighter.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, NotAnImageError, ReadError, UnsupportedCodecError
from .study import Slices

log = logging.getLogger(__name__)

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
#: the largest image we agree to decode (frames x rows x columns)
MAX_PIXELS = 512 * 4096 * 4096


def looks_like_dicom(path: Path) -> bool:
    """True for files with the DICM preamble or a DICOM file extension."""
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


#: what a damaged file can make pydicom raise while parsing or decoding
_PARSE_ERRORS = (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, struct.error)
_DICOM_MARKERS = ("SOPClassUID", "PixelData", "Modality", "StudyInstanceUID", "SeriesInstanceUID")


def dcmread(path: Path, *, stop_before_pixels: bool = False) -> Any:
    """Read a DICOM file; files without the 128-byte preamble (older or raw datasets)
    are read too when they parse into DICOM elements. Raises ReadError subclasses."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ReadError(path, f"cannot open file ({err.strerror})") from None
    try:
        if size == 0:
            raise CorruptFileError(path, "empty file")
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
    except _PARSE_ERRORS as err:
        raise CorruptFileError(path, f"cannot parse DICOM file ({type(err).__name__}: {_first_line(err)})") from None


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in _PIXEL_KEYWORDS)


def _describe(ds: Any) -> str:
    sop = ds.get("SOPClassUID")
    name = getattr(sop, "name", None) or str(sop or "unknown SOP class")
    return f"{name} (Modality {ds.get('Modality', '?')})"


def decode(path: Path, *, apply_voi: bool = True) -> Slices:
    """Decode one DICOM file into (frames, H, W) float32 presentation-ready values.

    Raises:
        NotAnImageError: the file has no pixel data (SR, RT plan, KO...).
        UnsupportedCodecError: no installed handler decodes its transfer syntax.
        CorruptFileError: truncated or malformed file.
    """

    path = Path(path)
    return decode_dataset(dcmread(path), path, apply_voi=apply_voi)


def decode_dataset(ds: Any, path: Path, *, apply_voi: bool = True) -> Slices:
    """:func:`decode` for a dataset already read (with its pixel data) from ``path``."""
    try:
        if not _has_pixels(ds):
            raise NotAnImageError(path, f"not an image: {_describe(ds)} has no pixel data")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except _PARSE_ERRORS as err:
        raise CorruptFileError(path, f"invalid image header ({type(err).__name__}: {_first_line(err)})") from None
    if rows <= 0 or cols <= 0:
        raise CorruptFileError(path, f"image has invalid size {rows}x{cols}")
    if rows * cols * frames > MAX_PIXELS:
        raise ReadError(path, f"image too large to screen: {frames} frame(s) of {rows}x{cols}")

    meta_info = getattr(ds, "file_meta", None)
    tsuid = meta_info.get("TransferSyntaxUID") if meta_info is not None else None
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as err:
        msg = _first_line(err)
        if "handler" in msg.lower() or "plugin" in msg.lower() or "decod" in msg.lower() or "support" in msg.lower():
            ts = f"{getattr(tsuid, 'name', tsuid)} ({tsuid})" if tsuid else "unknown transfer syntax"
            raise UnsupportedCodecError(path, f"no installed pixel handler decodes {ts}: {msg}") from None
        raise CorruptFileError(path, f"cannot decode pixel data ({msg})") from None
    except _PARSE_ERRORS as err:
        raise CorruptFileError(path, f"cannot decode pixel data ({type(err).__name__}: {_first_line(err)})") from None

    try:
        return _to_slices(path, np.asarray(arr), ds, frames, apply_voi, str(tsuid or ""))
    except ReadError:
        raise
    except _PARSE_ERRORS as err:
        raise CorruptFileError(path, f"cannot apply LUTs ({type(err).__name__}: {_first_line(err)})") from None


def _to_slices(path: Path, arr: np.ndarray, ds: Any, frames: int, apply_voi: bool, tsuid: str) -> Slices:
    notes: list[str] = []
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[None]  # (1, H, W[, 3])
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


def read_series(paths: Sequence[Path], *, apply_voi: bool = True) -> Slices:
    """Decode the files of one series (already in slice order) into one stack."""
    parts = [decode(p, apply_voi=apply_voi) for p in paths]
    shapes = {p.pixels.shape[1:] for p in parts}
    if len(shapes) > 1:
        raise ReadError(paths[0], f"series mixes image sizes {sorted(shapes)}; cannot stack its slices")
    notes = sorted({n for p in parts for n in p.notes})
    meta = dict(parts[0].meta)
    meta["n_files"] = len(parts)
    return Slices(pixels=np.concatenate([p.pixels for p in parts]), notes=notes, meta=meta)
