"""Readers and discovery on files written here and on pydicom's bundled test files."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest

from ra_sdk.errors import (
    CorruptFileError,
    NotAnImageError,
    ReadError,
    UnsupportedCodecError,
    UnsupportedFormatError,
)
from ra_sdk.io import discover, read_dicom, read_nifti, read_path, read_raster, read_study
from ra_sdk.io.write import write_dicom, write_nifti, write_png

pydicom = pytest.importorskip("pydicom")


def _pydicom_files() -> list[Path]:
    # Only files that are on disk after install; get_testdata_files() would download.
    root = Path(pydicom.data.__file__).parent / "test_files"
    skip = {".py", ".txt", ".json", ".gz", ".bz2", ".zip", ".png", ".bmp", ".jpg", ".j2k", ".jls", ".raw", ".pyc"}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in skip)


def test_pydicom_bundled_files_read_or_fail_with_one_line_reason():
    files = _pydicom_files()
    assert len(files) > 50
    counts: collections.Counter[str] = collections.Counter()
    decoded_syntaxes = set()
    for f in files:
        try:
            s = read_dicom(f)
        except (NotAnImageError, UnsupportedCodecError, CorruptFileError, ReadError) as err:
            msg = str(err)
            assert "\n" not in msg and f.name in msg and len(msg) < 600
            counts[type(err).__name__] += 1
            continue
        assert s.pixels.ndim == 3 and s.pixels.dtype == np.float32
        assert np.isfinite(s.pixels).all()
        counts["ok"] += 1
        decoded_syntaxes.add(s.meta["TransferSyntaxUID"])
    # Any other exception type would have failed the test above.
    assert counts["ok"] >= 60, counts
    assert counts["NotAnImageError"] >= 10, counts
    compressed = {
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.70",  # JPEG lossless
        "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.5",  # RLE
    }
    assert compressed <= decoded_syntaxes, compressed - decoded_syntaxes


def test_non_image_dicom_is_reported_not_crashed():
    sr = Path(pydicom.data.__file__).parent / "test_files" / "test-SR.dcm"
    with pytest.raises(NotAnImageError, match=r"not an image: .*SR"):
        read_dicom(sr)


def test_multiframe_dicom(tmp_path, rng):
    f = Path(pydicom.data.__file__).parent / "test_files" / "rtdose.dcm"
    s = read_dicom(f)
    assert s.pixels.shape == (15, 10, 10)
    assert any("multi-frame" in n for n in s.notes)
    frames = rng.integers(0, 1000, (3, 6, 5)).astype(np.uint16)
    f = write_dicom(tmp_path / "mf.dcm", frames, patient_id="P", study_uid="1.2", series_uid="1.2.3")
    np.testing.assert_array_equal(read_dicom(f).pixels, frames.astype(np.float32))


def test_modality_lut_then_window_and_monochrome1(tmp_path, rng):
    raw = rng.integers(0, 4000, (16, 20)).astype(np.uint16)
    common = dict(patient_id="P1", study_uid="1.2.3", series_uid="1.2.3.4")
    f = write_dicom(tmp_path / "a.dcm", raw, slope=2.0, intercept=-1000.0, **common)
    s = read_dicom(f)
    np.testing.assert_allclose(s.pixels[0], raw * 2.0 - 1000.0)
    # Window applied to rescaled values: centre 1000, width 2000 -> linear over [0, 2000].
    f = write_dicom(tmp_path / "b.dcm", raw, slope=2.0, intercept=-1000.0, window=(1000.0, 2000.0), **common)
    s = read_dicom(f)
    rescaled = raw * 2.0 - 1000.0
    assert np.all(s.pixels[0][rescaled <= -1] == s.pixels.min())
    assert np.all(np.diff(s.pixels[0].ravel()[np.argsort(rescaled.ravel())]) >= 0)  # monotone
    # MONOCHROME1: larger stored values are darker; after reading larger must mean brighter.
    f = write_dicom(tmp_path / "c.dcm", raw, photometric="MONOCHROME1", **common)
    s = read_dicom(f)
    np.testing.assert_allclose(s.pixels[0], raw.max() + raw.min() - raw.astype(np.float32))
    assert any("MONOCHROME1" in n for n in s.notes)


def test_signed_dicom(tmp_path, rng):
    raw = rng.integers(-1000, 1000, (8, 8)).astype(np.int16)
    f = write_dicom(tmp_path / "s.dcm", raw, patient_id="P", study_uid="1.2", series_uid="1.2.1")
    np.testing.assert_array_equal(read_dicom(f).pixels[0], raw.astype(np.float32))


def test_series_grouping_and_slice_order(tmp_path, rng):
    zs = [3.0, -1.0, 7.0, 1.0]
    for i, z in enumerate(zs):  # files written out of order, named against their position
        img = np.full((8, 8), int(z * 10 + 100), np.uint16)
        write_dicom(tmp_path / "s1" / f"f{i}.dcm", img, patient_id="P", study_uid="1.2", series_uid="1.2.10", instance=i + 1, position_z=z)
    write_dicom(tmp_path / "s1" / "other.dcm", np.zeros((8, 8), np.uint16), patient_id="P", study_uid="1.2", series_uid="1.2.11")
    studies = discover(tmp_path)
    assert [len(s.paths) for s in studies] == [4, 1]
    sl = read_study(studies[0])
    assert list(sl.pixels[:, 0, 0]) == [90.0, 110.0, 130.0, 170.0]  # sorted by position


def test_nifti_orientation_is_consistent(tmp_path, rng):
    nib = pytest.importorskip("nibabel")
    vol = rng.random((5, 6, 7)).astype(np.float32)  # (X, Y, Z) in RAS
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "ras.nii.gz"))
    # Same anatomy stored left-right and anterior-posterior flipped (LPS-like affine).
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:3, 3] = [4.0, 5.0, 0.0]
    nib.save(nib.Nifti1Image(vol[::-1, ::-1, :].copy(), lps), str(tmp_path / "lps.nii"))
    a = read_nifti(tmp_path / "ras.nii.gz").pixels
    b = read_nifti(tmp_path / "lps.nii").pixels
    assert a.shape == (7, 6, 5)
    np.testing.assert_array_equal(a, b)
    # Rows run anterior -> posterior and columns right -> left (radiological view).
    assert a[0, 0, 0] == vol[4, 5, 0]


def test_nifti_write_read_round_trip(tmp_path, rng):
    slices = rng.random((4, 9, 11)).astype(np.float32)
    f = write_nifti(tmp_path / "v.nii.gz", slices)
    np.testing.assert_array_equal(read_nifti(f).pixels, slices)


def test_4d_nifti_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "fmri.nii.gz"))
    with pytest.raises(UnsupportedFormatError, match="4-D NIfTI"):
        read_nifti(tmp_path / "fmri.nii.gz")


def test_raster_8_16_bit_and_colour(tmp_path, rng):
    cv2 = pytest.importorskip("cv2")
    g8 = rng.integers(0, 256, (10, 12)).astype(np.uint8)
    g16 = rng.integers(0, 65536, (10, 12)).astype(np.uint16)
    write_png(tmp_path / "g8.png", g8)
    write_png(tmp_path / "g16.png", g16)
    cv2.imwrite(str(tmp_path / "g16.tif"), g16)
    colour = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    np.testing.assert_array_equal(read_raster(tmp_path / "g8.png").pixels[0], g8)
    np.testing.assert_array_equal(read_raster(tmp_path / "g16.png").pixels[0], g16)
    np.testing.assert_array_equal(read_raster(tmp_path / "g16.tif").pixels[0], g16)
    c = read_raster(tmp_path / "c.png")
    assert c.pixels.shape == (1, 10, 12) and "colour converted to grey" in c.notes


@pytest.mark.parametrize(
    "name,content,err",
    [
        ("empty.png", b"", CorruptFileError),
        ("trunc.png", b"\x89PNG\r\n\x1a\n\0\0", CorruptFileError),
        ("empty.dcm", b"", CorruptFileError),
        ("junk.dcm", b"hello world" * 10, CorruptFileError),
        ("junk.nii.gz", b"\x1f\x8b not really gzip", CorruptFileError),
    ],
)
def test_bad_files_fail_with_reason(tmp_path, name, content, err):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(err) as info:
        read_path(p)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_truncated_dicom(tmp_path, rng):
    f = write_dicom(tmp_path / "t.dcm", rng.integers(0, 100, (64, 64)).astype(np.uint16), patient_id="P", study_uid="1.2", series_uid="1.2.3")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 3000])
    with pytest.raises(ReadError, match=r"t\.dcm"):
        read_dicom(f)


def test_discovery_deterministic_skips_hidden_and_survives_symlink_loops(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for name in ("b/2.png", "a/1.png", "c.png", ".hidden/x.png", "a/.y.png"):
        write_png(tmp_path / name, img)
    (tmp_path / "notes.txt").write_text("not an image")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    ids = [s.id for s in discover(tmp_path)]
    assert ids == ["a/1.png", "b/2.png", "c.png"]
    assert ids == [s.id for s in discover(tmp_path)]


def test_discover_missing_path(tmp_path):
    with pytest.raises(ReadError, match="no such file"):
        discover(tmp_path / "nope")
