"""Writing images as files users have: DICOM (16-bit MONOCHROME2 MR), PNG, NIfTI."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    instance: int = 1,
    position_z: float = 0.0,
    modality: str = "MR",
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    pixel_spacing: float = 1.0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one 2-D (or (frames, H, W)) uint16/int16 image as an uncompressed DICOM file.

    Headers are those of a plain image of ``modality`` (MR, DX, CR; others as Secondary
    Capture): patient, study, series, geometry, with
    ``ImagePositionPatient`` at ``(0, 0, position_z)`` and axial orientation.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        MRImageStorage,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    arr = np.asarray(pixels)
    if arr.dtype not in (np.uint16, np.int16, np.uint8):
        raise ValueError(f"pixels must be uint8, uint16 or int16, got {arr.dtype}")
    sop_class = {"MR": MRImageStorage, "DX": DigitalXRayImageStorageForPresentation, "CR": ComputedRadiographyImageStorage}.get(modality, SecondaryCaptureImageStorage)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = _dt.datetime(2024, 1, 1, 12, 0, 0)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = f"ANON^{patient_id}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.Manufacturer = "ra-sdk synthetic"
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(instance)
    ds.FrameOfReferenceUID = study_uid + ".1" if len(study_uid) < 60 else generate_uid()
    ds.ImagePositionPatient = [0.0, 0.0, float(position_z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    ds.SliceThickness = 1.0
    if modality == "MR":
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = arr.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype == np.int16 else 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = float(window[0]), float(window[1])
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 or uint16 grey image as PNG."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.asarray(image))
    if not ok:
        raise ValueError(f"cannot encode {path.name} as PNG")
    buf.tofile(path)
    return path


def write_nifti(path: str | Path, slices: np.ndarray, *, spacing: float = 1.0) -> Path:
    """Write (Z, H, W) axial slices (rows A->P, columns R->L) as a RAS+ NIfTI volume,
    the inverse of :func:`ra_sdk.io.nifti.ras_to_axial_slices`."""
    import nibabel as nib

    data = np.transpose(np.asarray(slices)[:, ::-1, ::-1], (2, 1, 0))
    affine = np.diag([spacing, spacing, spacing, 1.0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
    return path
