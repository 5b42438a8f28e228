"""DICOM outputs for PACS: a Secondary Capture with the anomaly overlay burned in, and a
DICOM Segmentation (SEG) of the thresholded anomaly map, for one screened DICOM study.

Both objects belong to the source study (same StudyInstanceUID, patient and study
modules copied from the source), live in new series with new UIDs, reference the source
series and instances, and say "NOT FOR DIAGNOSTIC USE". Nothing else is copied from the
source: no institution, operator, device or acquisition attributes.

Needs highdicom (``pip install 'ra-sdk[dicom]'``), imported only when used.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from .._version import __version__
from ..errors import DicomOutputError, ReadError
from ..preprocess import Preset, from_model_grid, normalise
from .dicom_parts import (
    banner,
    geometry,
    identity,
    new_uid,
    patient_orientation,
    read_back,
    reference,
    save,
    series_reference,
)
from .overlay import driving_index, heat_overlay

DISCLAIMER = "NOT FOR DIAGNOSTIC USE"
#: series numbers of the derived series (kept away from typical scanner numbering)
SC_SERIES_NUMBER = 9901
SEG_SERIES_NUMBER = 9902
#: a Secondary Capture is upscaled so that its shorter side has at least this many pixels
SC_MIN_SIDE = 512
#: a full disk or quota: the run stops (a write error of another kind is one study's note)
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


@dataclass
class _Source:
    """The screened study's files: one header (no pixel data) per file, and which file and
    frame each slice of the study is."""

    headers: list[Any]
    slice_of: list[tuple[int, int]]  # slice k of the study -> (file index, 1-based frame)


def _sources(headers: list[Any]) -> _Source:
    slice_of = []
    for i, ds in enumerate(headers):
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        slice_of += [(i, f + 1) for f in range(frames)]
    return _Source(list(headers), slice_of)


def write_study_outputs(
    headers: list[Any],
    maps: np.ndarray,
    slices: np.ndarray,
    max_slice: int,
    preset: Preset,
    pixel_threshold: float,
    out_dir: str | Path,
    *,
    score: float | None = None,
    percentile: float | None = None,
    apply_voi: bool = True,
    boxes: list[Any] | None = None,
    uid_seed: str | None = None,
) -> list[Path]:
    """Write ``sc.dcm`` and ``seg.dcm`` for one screened DICOM study into ``out_dir``.

    Args:
        headers: the datasets of the study's screened files in slice order, as read when
            it was screened (pixel data dropped; ``filename`` set): only the driving
            slice's file is read again, for its pixels.
        maps: (M, size, size) anomaly maps of the screened slices, on the model grid.
        slices: (M,) index in the study of each screened slice.
        max_slice: index in the study of the slice that drove the score (for the SC).
        pixel_threshold: the engine's pixel operating point; the SEG marks map > it.
        boxes: each screened slice's crop box on its source image (presets that crop
            uniform borders); the map lies inside it, zero outside.
        uid_seed: derive the new series and instance UIDs from this (the same seed gives
            the same UIDs); random when None.
    Returns:
        The files written. Raises :class:`DicomOutputError` with a one-line reason.
    """
    if not headers:
        raise DicomOutputError("no DICOM headers were kept for this study")
    paths = [Path(str(h.filename)) for h in headers]
    try:
        return _write(paths, headers, maps, slices, max_slice, preset, pixel_threshold, Path(out_dir), score, percentile, apply_voi, boxes, uid_seed)
    except OSError as err:
        if err.errno in _FULL:
            raise  # a full disk stops the run; it is not one study's problem
        raise DicomOutputError(f"{paths[0]}: {type(err).__name__}: {err.strerror or err}") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DicomOutputError(f"{paths[0]}: {type(err).__name__}: {first}") from None


def _write(paths: list[Path], headers: list[Any], maps: np.ndarray, slices: np.ndarray, max_slice: int, preset: Preset, pixel_threshold: float, out_dir: Path, score: float | None, percentile: float | None, apply_voi: bool, boxes: list[Any] | None, uid_seed: str | None = None) -> list[Path]:
    hd = require("highdicom", "DICOM outputs")
    from pydicom.sr.codedict import codes

    from ..io.dicom import dcmread, decode_dataset

    src = _sources(headers)
    if len(src.slice_of) < int(np.max(slices)) + 1:
        raise DicomOutputError(f"{paths[0]}: study has {len(src.slice_of)} slices, the result refers to slice {int(np.max(slices))}")
    thr = pixel_threshold if np.isfinite(pixel_threshold) else float(np.max(maps)) / 2

    # ---- Secondary Capture of the slice that drove the score, overlay burned in
    k = driving_index(slices, max_slice, maps)
    fi, frame = src.slice_of[int(slices[k])]
    ref = src.headers[fi]
    try:  # the driving slice's pixels, on the source grid
        pixels = decode_dataset(dcmread(Path(paths[fi])), Path(paths[fi]), apply_voi=apply_voi).pixels[frame - 1]
    except ReadError as err:
        raise DicomOutputError(f"cannot re-read the driving slice: {err}") from None
    grey = normalise(pixels, preset)
    amap = from_model_grid(maps[k], grey.shape, preset, boxes[k] if boxes else None)
    if min(grey.shape) < SC_MIN_SIDE:  # upscale before drawing, so outlines stay thin and smooth
        import cv2

        f = SC_MIN_SIDE / min(grey.shape)
        size = (round(grey.shape[1] * f), round(grey.shape[0] * f))
        grey, amap = (cv2.resize(a, size, interpolation=cv2.INTER_LINEAR) for a in (grey, amap))
    rgb = heat_overlay(grey, amap, thr)
    info = f"ra-sdk {__version__} anomaly map"
    if score is not None:
        info += f" | score {score:.4g}" + (f" (p{percentile:.0f} of normals)" if percentile is not None else "")
    info += f" | slice {int(slices[k]) + 1} of {len(src.slice_of)}"
    rgb = np.ascontiguousarray(banner(rgb, [DISCLAIMER, info]))

    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=identity(ref),
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=new_uid(uid_seed, "sc-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=new_uid(uid_seed, "sc"),
        instance_number=1,
        manufacturer="ra-sdk",
        patient_orientation=patient_orientation(ref),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    sc.SeriesDescription = f"RA anomaly overlay - {DISCLAIMER}"
    sc.ImageComments = f"{DISCLAIMER}. Unsupervised anomaly map (Reversed Auto-Encoder) burned in over the source slice; outlined where it exceeds the engine's pixel threshold {thr:.4g}."
    sc.BurnedInAnnotation = "NO"  # the burned-in text names no patient
    sc.DerivationDescription = "ra-sdk anomaly overlay"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.SourceImageSequence = [reference(ref, frame)]
    sc.ReferencedSeriesSequence = [series_reference(ref, [ref])]
    sc_path = out_dir / "sc.dcm"
    out_dir.mkdir(parents=True, exist_ok=True)
    save(sc, sc_path)
    read_back(sc_path, sc, rgb.shape)

    # ---- Segmentation of the thresholded map over every screened slice
    multi = [ds for ds in src.headers if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    masks: dict[tuple[int, int], np.ndarray] = {}
    for j, s in enumerate(np.asarray(slices)):
        fij = src.slice_of[int(s)]
        ds = src.headers[fij[0]]
        masks[fij] = from_model_grid(maps[j], (int(ds.Rows), int(ds.Columns)), preset, boxes[j] if boxes else None) > thr
    if not multi:
        source_images = [src.headers[fi] for fi, _ in sorted(masks)]
        mask = np.stack([masks[key] for key in sorted(masks)])
    elif len(src.headers) == 1:
        ds = src.headers[0]
        source_images = [ds]
        mask = np.zeros((int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)), bool)
        for (_, f), m in masks.items():
            mask[f - 1] = m
    else:
        raise DicomOutputError(f"{paths[0]}: a SEG over several multi-frame files is not supported")
    algorithm = hd.AlgorithmIdentificationSequence(name="ra-sdk Reversed Auto-Encoder", family=codes.DCM.ArtificialIntelligence, version=__version__)
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Anomaly (RA map above threshold)",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type="AUTOMATIC",
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[geometry(ds) for ds in source_images],
        pixel_array=mask.astype(np.uint8),
        segmentation_type="BINARY",
        segment_descriptions=[segment],
        series_instance_uid=new_uid(uid_seed, "seg-series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=new_uid(uid_seed, "seg"),
        instance_number=1,
        manufacturer="ra-sdk",
        manufacturer_model_name="ra-sdk",
        software_versions=__version__,
        device_serial_number="0",
        omit_empty_frames=bool(mask.any()),  # an all-empty SEG keeps its frames: "nothing above threshold"
        series_description=f"RA anomaly segmentation - {DISCLAIMER}",
    )
    seg.ContentDescription = f"{DISCLAIMER}: RA anomaly map above {thr:.4g}"[:64]
    seg_path = out_dir / "seg.dcm"
    save(seg, seg_path)
    read_back(seg_path, seg, None)
    return [sc_path, seg_path]
