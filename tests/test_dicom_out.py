"""DICOM outputs: every object reads back, references its source, and carries no
identifier that was not in the source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from ra_sdk.data.demo_studies import DemoSpec, write_demo_studies  # noqa: E402
from ra_sdk.io.write import write_dicom  # noqa: E402
from ra_sdk.preprocess import from_model_grid, get_preset  # noqa: E402
from ra_sdk.report.dicom import DISCLAIMER, DicomOutputError, write_study_outputs  # noqa: E402
from ra_sdk.run import run  # noqa: E402
from ra_sdk.screen import Screener  # noqa: E402

#: identifiers that must either be absent or equal the source's value
IDENTIFIERS = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs", "IssuerOfPatientID",
    "AccessionNumber", "StudyID", "ReferringPhysicianName", "InstitutionName", "InstitutionAddress",
    "StationName", "OperatorsName", "PerformingPhysicianName", "PatientAddress", "PatientAge", "PatientWeight",
]
#: present in the planted source; none may be copied into an output
NOT_COPIED = {"InstitutionName": "St Elsewhere", "OperatorsName": "TECH^ALICE", "StationName": "MR-7", "OtherPatientIDs": "OLD-ID-42", "PatientAge": "043Y"}


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom-out")
    write_demo_studies(root, DemoSpec(n_normal=4, n_per_type=1, n_volumes=1))
    # A 3-slice non-square series with identifiers beyond the patient/study modules.
    rng = np.random.default_rng(0)
    from ra_sdk.data.augment import sample

    for z in range(3):
        img = sample("test", 40 + z, size=128).image
        pix = (np.pad(img, ((0, 0), (16, 16))) * 3000).astype(np.uint16) + rng.integers(0, 20, (128, 160), dtype=np.uint16)
        write_dicom(root / "studies" / "series" / f"im{z}.dcm", pix, patient_id="PAT-7", study_uid="1.2.3.4.5", series_uid="1.2.3.4.5.6", instance=z + 1, position_z=float(z), extra=dict(NOT_COPIED))
    out = root / "out"
    s = Screener(None, backend="onnxruntime", device="cpu")
    maps = {}
    summary, rows = run(root / "studies", out, s, dicom="all", on_result=lambda r: maps.setdefault(r.study, (r.maps, r.slices)))
    s.close()
    assert summary.failed == 0
    for r in rows:
        r["maps"], r["slices"] = maps[r["study"]]
    return root, out, rows


def _walk(ds):
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)
        else:
            yield elem


def _source(out_row):
    return [pydicom.dcmread(p) for p in out_row["paths"].split(";")]


def test_every_dicom_study_gets_an_sc_and_a_seg(screened):
    _, out, rows = screened
    dicom_rows = [r for r in rows if r["paths"].endswith(".dcm")]
    assert len(dicom_rows) >= 3
    for r in rows:
        if r["paths"].endswith(".dcm"):
            assert sorted(Path(p).name for p in r["outputs"]) == ["sc.dcm", "seg.dcm"], r
            for p in r["outputs"]:
                assert (out / p).resolve().is_relative_to(out.resolve())
        else:
            assert "outputs" not in r  # PNG and NIfTI studies have no DICOM source to reference


def test_outputs_read_back_and_reference_their_source(screened):
    _, out, rows = screened
    for r in (r for r in rows if r.get("outputs")):
        src = _source(r)
        src_uids = {d.SOPInstanceUID for d in src}
        sc, seg = (pydicom.dcmread(out / p) for p in sorted(r["outputs"]))
        assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
        for obj in (sc, seg):
            assert obj.StudyInstanceUID == src[0].StudyInstanceUID
            assert obj.SeriesInstanceUID != src[0].SeriesInstanceUID
            assert obj.SOPInstanceUID not in src_uids
            assert DISCLAIMER in obj.SeriesDescription
            assert obj.ReferencedSeriesSequence[0].SeriesInstanceUID == src[0].SeriesInstanceUID
            assert {i.ReferencedSOPInstanceUID for i in obj.ReferencedSeriesSequence[0].ReferencedInstanceSequence} <= src_uids
        from ra_sdk.report.dicom_parts import IDENTITY

        for kw in IDENTITY:  # the patient and study identifiers travel with the objects
            if kw in src[0]:
                assert str(sc.get(kw)) == str(src[0].get(kw)) and str(seg.get(kw)) == str(src[0].get(kw)), kw
        assert sc.SeriesInstanceUID != seg.SeriesInstanceUID
        assert DISCLAIMER in sc.ImageComments
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src[r["max_slice"]].SOPInstanceUID
        assert sc.pixel_array.shape[2] == 3 and min(sc.pixel_array.shape[:2]) >= 512
        assert list(sc.PatientOrientation) == ["L", "P"]  # axial sources
        assert seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
        assert (seg.Rows, seg.Columns) == (src[0].Rows, src[0].Columns)


def test_no_identifier_that_was_not_in_the_source(screened):
    _, out, rows = screened
    for r in (r for r in rows if r.get("outputs")):
        src = _source(r)
        src_values = {(e.keyword, str(e.value)) for d in src for e in _walk(d)}
        src_uids = {str(e.value) for d in src for e in _walk(d) if e.VR == "UI"} | {str(d.file_meta.MediaStorageSOPInstanceUID) for d in src}
        for p in r["outputs"]:
            obj = pydicom.dcmread(out / p)
            for elem in _walk(obj):
                if elem.keyword in IDENTIFIERS or elem.VR == "PN":
                    if str(elem.value) == "":
                        continue
                    assert (elem.keyword, str(elem.value)) in src_values, f"{p}: {elem.keyword}={elem.value!r} is not in the source"
                if elem.keyword in NOT_COPIED:
                    pytest.fail(f"{p}: {elem.keyword} copied from the source")
            # UIDs: the source's, the standard's, or new ones made for this object
            for elem in _walk(obj):
                if elem.VR == "UI" and elem.value:
                    v = str(elem.value)
                    assert v in src_uids or v.startswith("1.2.840.10008.") or v.startswith("2.25.") or elem.keyword in ("DimensionOrganizationUID",), f"{p}: {elem.keyword}={v}"


def test_seg_matches_the_thresholded_map_on_the_source_grid(screened):
    _, out, rows = screened
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.engine import read_engine

    eng = read_engine(DEMO_ENGINE)
    thr, preset = eng.meta.calibration.pixel_threshold, eng.meta.preset
    series = next(r for r in rows if r["study"].startswith("series/"))
    assert series["n_slices"] >= 2
    src_paths = series["paths"].split(";")
    seg = hd.seg.segread(out / next(p for p in series["outputs"] if p.endswith("seg.dcm")))
    src = [pydicom.dcmread(p) for p in src_paths]
    for k, amap in zip(series["slices"], series["maps"], strict=True):
        ds = src[int(k)]
        want = from_model_grid(amap, (ds.Rows, ds.Columns), preset) > thr
        got = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[1], assert_missing_frames_are_empty=True)[0, ..., 0]
        assert got.shape == want.shape
        assert np.array_equal(got.astype(bool), want), ds.SOPInstanceUID


def test_from_model_grid_inverts_pad_and_resize():
    """A smooth pattern that varies along both axes goes to the model grid and back onto
    wide, tall and square source grids; only resampling error remains (a wrong crop or
    axis would leave an error of the pattern's size)."""
    from ra_sdk.preprocess import normalise, to_model_input

    preset = get_preset("brain-mri-t1").replace(clip=(0.0, 100.0))
    for shape in ((120, 200), (200, 120), (96, 96)):
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        img = normalise(0.1 + 0.4 * yy / shape[0] + 0.4 * xx / shape[1], preset)
        back = from_model_grid(to_model_input(img, preset), img.shape, preset)
        assert back.shape == img.shape
        assert np.abs(back - img)[2:-2, 2:-2].max() < 0.02, shape


def test_a_failed_output_is_a_note_and_the_run_goes_on(tmp_path, monkeypatch):
    import ra_sdk.report.dicom as dout

    write_demo_studies(tmp_path, DemoSpec(n_normal=3, n_per_type=0, n_volumes=0))

    def boom(*a, **k):
        raise ValueError("no room on the PACS today")

    monkeypatch.setattr(dout, "_write", boom)
    s = Screener(None, backend="onnxruntime", device="cpu")
    summary, rows = run(tmp_path / "studies", tmp_path / "out", s, dicom="all")
    s.close()
    dicom_rows = [r for r in rows if r["paths"].endswith(".dcm")]
    assert summary.failed == 0 and dicom_rows
    for r in dicom_rows:
        assert r["score"] is not None and "DICOM output failed" in r["notes"] and "no room on the PACS today" in r["notes"]


def test_missing_source_is_a_one_line_error(tmp_path):
    from pydicom.dataset import Dataset

    header = Dataset()
    header.Rows, header.Columns = 128, 128
    header.filename = str(tmp_path / "gone.dcm")
    with pytest.raises(DicomOutputError, match=r"gone\.dcm"):
        write_study_outputs([header], np.zeros((1, 128, 128), np.float32), np.array([0]), 0, get_preset("brain-mri-t1"), 1.0, tmp_path / "o")


def test_patient_orientation_follows_the_source():
    from pydicom.dataset import Dataset

    from ra_sdk.report.dicom_parts import patient_orientation

    def ds(**kw):
        d = Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    assert patient_orientation(ds(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])) == ("L", "P")  # axial
    assert patient_orientation(ds(ImageOrientationPatient=[1, 0, 0, 0, 0, -1])) == ("L", "F")  # coronal
    assert patient_orientation(ds(ImageOrientationPatient=[0, 1, 0, 0, 0, -1])) == ("P", "F")  # sagittal
    assert patient_orientation(ds(ImageOrientationPatient=[-0.9, 0.1, 0, 0, -1, 0])) == ("R", "A")
    assert patient_orientation(ds(PatientOrientation=["A", "F"], ImageOrientationPatient=[1, 0, 0, 0, 1, 0])) == ("A", "F")
