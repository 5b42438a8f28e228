"""Every modality of the paper: from a folder of normal radiographs to an engine named for
what it screens, and each radiograph preprocessing step against hand-computed values."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from radiographs import BORDER_VALUE, chest, write_normals

from ra_sdk.cli import main
from ra_sdk.io import read_dicom
from ra_sdk.io.write import write_dicom
from ra_sdk.preprocess import border_box, from_model_grid, get_preset, modality_note, to_model_input


# ---------------------------------------------------------------- preprocessing steps
def test_border_crop_finds_the_collimator_and_keeps_the_anatomy():
    img = chest(np.random.default_rng(0), 300, 260, border=(18, 12, 14, 10))
    assert border_box(img) == (18, 300 - 12, 14, 260 - 10)  # the "L" marker in the top band goes with it
    plain = chest(np.random.default_rng(1), 200, 200, border=(0, 0, 0, 0))
    assert border_box(plain) == (0, 200, 0, 200)
    # a border wider than 30% of a side is cropped to 30% at most
    wide = chest(np.random.default_rng(2), 200, 200, border=(90, 0, 0, 0))
    assert border_box(wide)[0] == 60


def test_crop_is_inverted_on_the_way_back():
    preset = get_preset("chest-xray")
    img = chest(np.random.default_rng(3), 300, 260)
    box = border_box(img)
    x = to_model_input(img, preset)
    assert x.shape == (128, 128) and x.min() >= 0 and x.max() <= 1
    back = from_model_grid(np.ones((128, 128), np.float32), img.shape, preset, box)
    assert back.shape == img.shape
    assert (back[: box[0]] == 0).all() and (back[:, : box[2]] == 0).all() and (back[box[1] :] == 0).all()
    assert back[box[0] : box[1], box[2] : box[3]].min() > 0.99


def test_monochrome1_is_inverted(tmp_path):
    stored = np.array([[0, 1000], [3000, 4000]], np.uint16).repeat(8, 0).repeat(8, 1)
    write_dicom(tmp_path / "m1.dcm", stored, patient_id="P", study_uid="1.2", series_uid="1.2.1", modality="DX", photometric="MONOCHROME1")
    got = read_dicom(tmp_path / "m1.dcm").pixels[0]
    # larger means brighter: (max + min) - stored
    np.testing.assert_array_equal(got[::8, ::8], np.array([[4000, 3000], [1000, 0]], np.float32))
    assert "MONOCHROME1 inverted" in read_dicom(tmp_path / "m1.dcm").notes


def test_voi_window_follows_the_dicom_formula(tmp_path):
    stored = np.array([[0, 100, 1000, 1500, 2000, 2999, 3000, 4000]], np.uint16).repeat(16, 0)
    write_dicom(tmp_path / "w.dcm", stored, patient_id="P", study_uid="1.3", series_uid="1.3.1", modality="DX", window=(1500.0, 1000.0))
    got = read_dicom(tmp_path / "w.dcm", apply_voi=True).pixels[0, 0]
    c, w, ymax = 1500.0, 1000.0, 65535.0  # PS3.3 C.11.2.1.2.1, output range of a 16-bit image

    def voi(x: float) -> float:
        if x <= c - 0.5 - (w - 1) / 2:
            return 0.0
        if x > c - 0.5 + (w - 1) / 2:
            return ymax
        return ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax

    np.testing.assert_allclose(got, [voi(v) for v in stored[0]], rtol=1e-6, atol=1e-3)
    raw = read_dicom(tmp_path / "w.dcm", apply_voi=False).pixels[0, 0]
    np.testing.assert_array_equal(raw, stored[0])


def test_laterality_decides_the_mirror():
    torch = pytest.importorskip("torch")
    from ra_sdk.train.data import augment_batch

    assert get_preset("chest-xray").hflip is False and get_preset("wrist-xray").hflip is True
    x = torch.zeros(64, 1, 64, 64)
    x[..., :24] = 1.0  # bright on the left only

    def left_brighter(y):
        return (y[..., :32].mean((1, 2, 3)) > y[..., 32:].mean((1, 2, 3))).tolist()

    assert all(left_brighter(augment_batch(x, torch.Generator().manual_seed(0), hflip=False)))
    assert not all(left_brighter(augment_batch(x, torch.Generator().manual_seed(0), hflip=True)))


def test_modality_notes():
    chest_p, brain_p = get_preset("chest-xray"), get_preset("brain-mri-t1")
    assert "modality mismatch" in modality_note("MR", "dicom", chest_p)
    assert "modality mismatch" in modality_note("CR", "dicom", brain_p)
    assert "NIfTI volume" in modality_note(None, "nifti", chest_p)
    assert modality_note("CR", "dicom", chest_p) is None and modality_note(None, "image", chest_p) is None
    assert modality_note("CT", "dicom", get_preset("generic")) is None


# ----------------------------------------------------------------- the whole recipe
@pytest.mark.slow
def test_bring_your_own_normals_recipe(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    ids = write_normals(tmp_path / "normals", 12, 12)
    run = tmp_path / "run"

    def cli(*args):
        r = CliRunner().invoke(main, list(args))
        assert r.exit_code == 0, (args, r.output)
        return r.output

    out = cli("train", "--preset", "chest-xray", "--data", str(tmp_path / "normals"), "--model", "ra-tiny", "--epochs", "1", "--batch-size", "8", "--max-steps", "3", "--val-fraction", "0.5", "--device", "cpu", "--out", str(run))
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["train"] + split["val"]) == sorted(ids) and not set(split["train"]) & set(split["val"])  # by study
    assert len(split["val"]) == 12 and "12 validation studies" in out  # calibration needs >= 10 normals
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert cfg["preset"]["name"] == "chest-xray" and cfg["preset"]["hflip"] is False and cfg["preset"]["crop_borders"] is True
    engine = tmp_path / "ra_chest.onnx-bundle"
    cli("export", str(run / "best"), "--out", str(engine))
    out = cli("calibrate", str(engine), "-n", "64")  # default: the held-out split the trainer wrote
    assert "held-out split of the training run (12 studies" in out and "preset   chest-xray (DX)" in out
    r = CliRunner().invoke(main, ["calibrate", str(engine), "--normals", "embedded"])
    assert r.exit_code == 1 and "brain MRI" in r.output
    # the mission's command shape: a mixed folder, an engine named for what it screens
    plan = tmp_path / "ra_chest.plan"
    shutil.copy(engine, plan)
    mixed = tmp_path / "studies"
    shutil.copytree(tmp_path / "normals" / "png", mixed / "png")
    shutil.copy(tmp_path / "normals" / "dx" / "cxr00.dcm", mixed / "cxr00.dcm")
    write_dicom(mixed / "brain.dcm", (np.random.default_rng(5).random((128, 128)) * 3000).astype(np.uint16), patient_id="MR1", study_uid="1.9", series_uid="1.9.1", modality="MR")
    monkeypatch.chdir(tmp_path)
    out = cli("screen", "./studies/", "--engine", "ra_chest.plan", "--device", "cpu", "--no-progress")
    rows = {r["study"]: r for r in map(json.loads, open(tmp_path / "ra-sdk-results" / "results.jsonl"))}
    assert len(rows) == 14 and all(r["error"] is None for r in rows.values())
    assert "modality mismatch: a MR study screened with a chest-xray (DX) engine" in rows["brain.dcm"]["notes"]
    assert "modality mismatch" not in rows["cxr00.dcm"]["notes"] and "uniform borders cropped" in rows["cxr00.dcm"]["notes"]
    out = cli("inspect", str(plan))
    assert "chest-xray (DX)" in out and "held-out" in out
    out = cli("data", "preview", "--preset", "chest-xray", "--data", str(mixed), "--out", str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").exists() and "uniform borders cropped" in out
    assert BORDER_VALUE > 0


def test_data_preview_shows_what_the_model_sees_and_refuses_what_screening_refuses(tmp_path):
    """``ra-sdk data preview --data``: one tile per study through the preset (the collimator
    crop noted), and a study that screening would refuse gets screening's one-line reason."""
    import cv2

    write_normals(tmp_path / "n", n_dicom=2, n_png=1)
    (tmp_path / "n" / "dx" / "broken.dcm").write_bytes(b"DICM" * 10)
    r = CliRunner().invoke(main, ["data", "preview", "--preset", "chest-xray", "--data", str(tmp_path / "n"), "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    ok = [ln for ln in lines if ln.startswith("ok ")]
    bad = [ln for ln in lines if ln.startswith("error ")]
    assert len(ok) == 3 and all("-> 128x128" in ln and "uniform borders cropped" in ln for ln in ok)
    assert len(bad) == 1 and "broken.dcm" in bad[0]
    grid = cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_UNCHANGED)
    assert grid.shape == (128 + 14, 6 * 128)  # one row of 6 tiles (4 studies, 2 blank)
    studies = [ln for ln in lines if ln.startswith(("ok ", "error "))]  # in tile order
    tiles = [grid[14:, 128 * k : 128 * (k + 1)] for k in range(4)]
    for line, tile in zip(studies, tiles):
        assert (tile.max() == 0) == line.startswith("error ")  # a refused study's tile stays dark
