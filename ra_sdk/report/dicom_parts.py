"""The pieces DICOM outputs are made of: new UIDs, what is copied from a source (its
identity, and for a SEG its geometry: nothing else), orientation letters, references to
source instances, the burned-in banner, and writing an object atomically with a read-back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomOutputError


def new_uid(seed: str | None = None, what: str = "") -> str:
    """A new UID under 2.25 (a UUID as an integer: no registered root needed); random, or
    derived from ``seed`` and ``what`` so that the same study screened the same way gives
    the same UIDs (a DICOM node that sends an object again sends the same instance)."""
    if seed is None:
        from pydicom.uid import generate_uid

        return str(generate_uid(prefix=None))
    import hashlib

    return "2.25." + str(int(hashlib.sha256(f"{seed}|{what}".encode()).hexdigest()[:32], 16))


#: patient direction of +x, +y, +z (DICOM LPS) and of their negatives
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def patient_orientation(ds: Any) -> tuple[str, str]:
    """(row direction, column direction) letters of an image, for PatientOrientation:
    the source's own PatientOrientation, else the dominant axes of its
    ImageOrientationPatient, else the axial default ("L", "P")."""
    po = ds.get("PatientOrientation")
    if po is not None and len(po) == 2 and all(str(v) for v in po):
        return str(po[0]), str(po[1])
    iop = ds.get("ImageOrientationPatient")
    if iop is not None and len(iop) == 6:

        def letter(v: np.ndarray) -> str:
            i = int(np.argmax(np.abs(v)))
            return _AXIS_LETTERS[i][0 if v[i] > 0 else 1]

        cos = np.asarray([float(x) for x in iop])
        return letter(cos[:3]), letter(cos[3:])
    return "L", "P"


def banner(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """Put text lines in a black band above the image (never over anatomy)."""
    import cv2

    w = rgb.shape[1]
    scale = max(0.4, w / 900)
    step = int(28 * scale) + 6
    band = np.zeros((step * len(lines) + 8, w, 3), np.uint8)
    for i, text in enumerate(lines):
        colour = (255, 80, 80) if i == 0 else (230, 230, 230)
        cv2.putText(band, text, (6, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(1, int(2 * scale)), cv2.LINE_AA)
    return np.concatenate([band, rgb], 0)


#: what a derived object carries over from its source: the patient and study identifiers
IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName")


def identity(src: Any) -> Any:
    """A dataset holding only the source's patient and study identifiers (and its
    modality), so that nothing else (institution, operator, station...) can be copied."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for kw in (*IDENTITY, "Modality", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID"):
        if kw in src:
            setattr(ds, kw, src.data_element(kw).value)
    return ds


#: what the SEG builder may read from a source image besides its identity: geometry and
#: pixel description (highdicom copies more than the patient and study modules otherwise)
GEOMETRY = (
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Modality", "SeriesNumber", "InstanceNumber", "Rows", "Columns", "PixelSpacing", "ImageOrientationPatient",
    "ImagePositionPatient", "SliceThickness", "SpacingBetweenSlices", "SamplesPerPixel", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "NumberOfFrames",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
)


def geometry(src: Any) -> Any:
    """A copy of a source image with only its identity, geometry and pixel description."""
    from pydicom.dataset import FileMetaDataset

    ds = identity(src)
    for kw in GEOMETRY:
        if kw in src:
            ds[kw] = src[kw]
    ds.file_meta = FileMetaDataset(src.file_meta)
    return ds


def save(ds: Any, path: Path) -> None:
    """Write a dataset atomically (a full disk never leaves half an object behind)."""
    import io

    from ..io.files import atomic_write

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    atomic_write(path, buf.getvalue())


def read_back(path: Path, written: Any, shape: tuple[int, ...] | None) -> None:
    """Read a written object back with pydicom: same identity, decodable pixels."""
    import pydicom

    ds = pydicom.dcmread(path)
    for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if ds.get(kw) != written.get(kw):
            raise DicomOutputError(f"{path}: {kw} reads back as {ds.get(kw)!r}, wrote {written.get(kw)!r}")
    pixels = ds.pixel_array
    if shape is not None and pixels.shape != shape:
        raise DicomOutputError(f"{path}: pixels read back as {pixels.shape}, wrote {shape}")


def reference(ds: Any, frame: int | None = None) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if frame is not None and int(ds.get("NumberOfFrames", 1) or 1) > 1:
        item.ReferencedFrameNumber = frame
    return item


def series_reference(ds: Any, members: list[Any]) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.SeriesInstanceUID = ds.SeriesInstanceUID
    item.ReferencedInstanceSequence = [reference(m) for m in members]
    return item
