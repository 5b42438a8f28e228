"""Screening: the Screener API, ra-sdk screen (results, exit codes, bad input, resume) and ra-sdk demo."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import ra_sdk
from ra_sdk.cli import main
from ra_sdk.io.write import write_dicom, write_nifti, write_png
from ra_sdk.journal import JOURNAL, read_journal
from ra_sdk.results import safe_name

pydicom = pytest.importorskip("pydicom")
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


@pytest.fixture(scope="module")
def screener():
    return ra_sdk.load(backend="onnxruntime", device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def normal_images():
    from ra_sdk.data.augment import normal_batch

    return normal_batch("test", 12)


def _write_pngs(folder: Path, images: np.ndarray) -> None:
    for i, img in enumerate(images):
        write_png(folder / f"s{i:03d}.png", (img * 255).astype(np.uint8))


def test_load_screen_and_screen_one(screener, normal_images, tmp_path):
    _write_pngs(tmp_path, normal_images[:3])
    items = [tmp_path / "s000.png", normal_images[1], np.zeros((3, 3, 3, 3)), tmp_path / "missing.png"]
    res = screener.screen(items)
    assert [r.study for r in res][:2] == ["s000.png", "array-1"]
    assert res[0].error is None and res[0].score is not None and 0 <= res[0].percentile <= 100
    assert isinstance(res[0].flagged, bool) and res[0].n_slices == 1 and res[0].max_slice == 0
    assert res[2].error and res[2].error_kind == "bad-array"
    assert res[3].error and "missing.png" in res[3].error
    (tmp_path / "notes.txt").write_text("not an image")
    txt = screener.screen([tmp_path / "notes.txt"])[0]
    assert txt.score is None and "not a recognised image file" in txt.error
    one = screener.screen_one(normal_images[1], return_maps=True)
    assert one.score == pytest.approx(res[1].score, rel=1e-6)
    assert one.maps.shape == (1, 128, 128) and one.recons.shape == (1, 128, 128)
    assert one.timings["score_s"] > 0


def test_screener_is_thread_safe(screener, normal_images):
    ref = [r.score for r in screener.screen(list(normal_images))]
    got: list[list[float]] = []

    def work():
        got.append([r.score for r in screener.screen(list(normal_images))])

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.allclose(g, ref, rtol=1e-6) for g in got) and len(got) == 3


def _bad_inputs(root: Path) -> dict[str, str]:
    """At least 15 kinds of broken file; returns file name -> expected error kind."""
    import cv2
    import nibabel as nib

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ok = rng.integers(0, 4000, (64, 64)).astype(np.uint16)
    common = dict(patient_id="P", study_uid="1.2.3", series_uid="1.2.3.9")
    expect = {}
    (root / "empty.dcm").write_bytes(b"")
    expect["empty.dcm"] = "corrupt"
    (root / "empty.png").write_bytes(b"")
    expect["empty.png"] = "corrupt"
    (root / "trunc.png").write_bytes(cv2.imencode(".png", (ok // 16).astype(np.uint8))[1].tobytes()[:60])
    expect["trunc.png"] = "corrupt"
    (root / "trunc.jpg").write_bytes(cv2.imencode(".jpg", (ok // 16).astype(np.uint8))[1].tobytes()[:50])
    expect["trunc.jpg"] = "corrupt"
    f = write_dicom(root / "trunc.dcm", ok, **{**common, "series_uid": "1.2.3.1"})
    f.write_bytes(f.read_bytes()[:-4000])
    expect["trunc.dcm"] = "corrupt"
    shutil.copy(PYDICOM_FILES / "test-SR.dcm", root / "report-sr.dcm")
    expect["report-sr.dcm"] = "not-an-image"
    shutil.copy(PYDICOM_FILES / "JPEG-lossy.dcm", root / "codec.dcm")
    expect["codec.dcm"] = "unsupported-codec"
    shutil.copy(PYDICOM_FILES / "badVR.dcm", root / "badvr.dcm")
    expect["badvr.dcm"] = "corrupt"
    shutil.copy(PYDICOM_FILES / "nested_priv_SQ.dcm", root / "nopixels-size.dcm")
    expect["nopixels-size.dcm"] = "corrupt"
    (root / "text.dcm").write_text("this is not DICOM\n" * 20)
    expect["text.dcm"] = "corrupt"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 4), np.float32), np.eye(4)), str(root / "fmri.nii.gz"))
    expect["fmri.nii.gz"] = "unsupported-format"
    (root / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    expect["bad.nii.gz"] = "corrupt"
    (root / "zero.nii").write_bytes(b"")
    expect["zero.nii"] = "corrupt"
    (root / "junk.tif").write_bytes(b"II*\x00" + bytes(range(200)))
    expect["junk.tif"] = "corrupt"
    nan = np.full((16, 16), np.nan, np.float32)
    cv2.imwrite(str(root / "nan.tif"), nan)
    expect["nan.tif"] = "corrupt"
    write_dicom(root / "huge.dcm", ok[:8, :8], **{**common, "series_uid": "1.2.3.2"}, extra={})
    ds = pydicom.dcmread(root / "huge.dcm")
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 10
    ds.save_as(root / "huge.dcm")
    expect["huge.dcm"] = "too-large"
    return expect


@pytest.mark.slow
def test_bad_input_suite_rows_with_reasons(tmp_path):
    studies = tmp_path / "in"
    expect = _bad_inputs(studies)
    assert len(expect) >= 15
    # odd but valid files get rows with scores (and notes)
    import cv2

    ramp = np.tile(np.arange(40, dtype=np.uint8) * 5, (40, 1))
    cv2.imwrite(str(studies / "rgba.png"), np.dstack([ramp, ramp // 2, 255 - ramp, np.full((40, 40), 255, np.uint8)]))
    write_png(studies / "tiny.png", np.array([[7]], np.uint8))
    write_png(studies / "flat16.png", np.zeros((32, 48), np.uint16))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "ra_sdk.cli", "screen", str(studies), "--out", str(out), "--backend", "onnxruntime", "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "Traceback" not in r.stderr + r.stdout
    rows = {row["study"]: row for row in csv.DictReader(open(out / "results.csv"))}
    for name, kind in expect.items():
        assert name in rows, name
        assert rows[name]["error"] and rows[name]["error_kind"] == kind, (name, rows[name])
        assert name in rows[name]["error"] and "\n" not in rows[name]["error"]
    assert rows["rgba.png"]["error"] == "" and rows["rgba.png"]["score"] != "", rows["rgba.png"]
    for name in ("tiny.png", "flat16.png"):  # no usable signal: a failure with its reason, never a normal
        assert rows[name]["error_kind"] == "no-signal" and rows[name]["score"] == "", rows[name]
    assert "colour" in rows["rgba.png"]["notes"] or "alpha" in rows["rgba.png"]["notes"]


def test_screen_cli_results_sorted_and_exit_codes(tmp_path, normal_images):
    _write_pngs(tmp_path / "in", normal_images[:10])
    write_nifti(tmp_path / "in" / "vol.nii.gz", np.stack([normal_images[0]] * 3) * 1000)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(out), "--backend", "onnxruntime", "--device", "cpu", "--save-maps"])
    assert r.exit_code == 0, r.output
    assert "11 studies: 11 screened" in r.output and "images/s" in r.output
    rows = list(csv.DictReader(open(out / "results.csv")))
    scores = [float(x["score"]) for x in rows]
    assert scores == sorted(scores, reverse=True) and len(rows) == 11
    jl = [json.loads(x) for x in open(out / "results.jsonl")]
    assert [x["study"] for x in jl] == [x["study"] for x in rows]
    vol = next(x for x in jl if x["study"] == "vol.nii.gz")
    assert vol["n_slices"] >= 1 and vol["max_slice"] is not None
    pngs = list((out / "maps").glob("*.png"))
    assert len(pngs) == 11 and all(p.resolve().parent == (out / "maps").resolve() for p in pngs)
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--engine", str(tmp_path / "nope.plan")])
    assert r.exit_code == 1 and "no such engine file" in r.output
    ro = tmp_path / "ro"
    ro.write_text("a file, not a folder")
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(ro / "x")])
    assert r.exit_code == 1 and "not writable" in r.output


def test_safe_names_stay_inside():
    for sid in ("../../etc/passwd", "/abs/path.dcm", "a/b/../c", "..", ""):
        n = safe_name(sid)
        assert "/" not in n and not n.startswith(".") and n


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_results(tmp_path, normal_images):
    from ra_sdk.data.augment import normal_batch

    imgs = normal_batch("test", 60, start=100)
    _write_pngs(tmp_path / "in", imgs)
    cmd = [sys.executable, "-m", "ra_sdk.cli", "screen", str(tmp_path / "in"), "--backend", "onnxruntime", "--device", "cpu", "--batch-size", "4"]
    assert subprocess.run([*cmd, "--out", str(tmp_path / "full")], capture_output=True).returncode == 0
    out = tmp_path / "killed"
    p = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_journal(out / JOURNAL)) < 15:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    partial = len(read_journal(out / JOURNAL))
    assert 15 <= partial < 60, partial
    assert not (out / "results.csv").exists()
    assert subprocess.run([*cmd, "--out", str(out)], capture_output=True).returncode == 0
    full = list(csv.DictReader(open(tmp_path / "full" / "results.csv")))
    resumed = list(csv.DictReader(open(out / "results.csv")))
    assert len(resumed) == 60
    # a resume after a kill regroups batches; a score does not depend on its batch, so the
    # rows are the same to the last digit
    assert [(r["study"], r["score"], r["flagged"]) for r in resumed] == [(r["study"], r["score"], r["flagged"]) for r in full]


def test_demo_command_prints_the_table(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "--n-normal", "8", "--n-per-type", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for t in ("mass", "atrophy", "artefacts"):
        assert t in r.output
    assert "images/s" in r.output and (tmp_path / "d" / "results" / "results.csv").exists()
    assert (tmp_path / "d" / "results" / "report.html").exists() and "report.html" in r.output


def test_screen_one_runs_in_the_calling_thread_reuses_its_buffer_and_is_thread_safe(monkeypatch):
    """The low-latency path: no thread pool per call, one input buffer per thread, and
    several threads at once get exactly the scores they get alone (and that a batch gives)."""
    from concurrent.futures import ThreadPoolExecutor

    from ra_sdk.data.augment import normal_batch
    from ra_sdk.screen import Screener

    imgs = normal_batch("test", 8, start=0)
    with Screener(backend="onnxruntime", device="cpu") as s:
        batch = [r.score for r in s.screen(list(imgs))]
        with monkeypatch.context() as m:
            def no_pool(*a, **k):
                raise AssertionError("screen_one started a thread pool")

            m.setattr("ra_sdk.screen.ThreadPoolExecutor", no_pool)
            before = set(threading.enumerate())
            alone = [s.screen_one(x).score for x in imgs]
            buffers = {id(s._input_buffer(1, imgs.shape[1:]).base) for _ in range(3)}
            assert not set(threading.enumerate()) - before and len(buffers) == 1
        assert alone == batch
        with ThreadPoolExecutor(4) as ex:
            together = list(ex.map(lambda i: s.screen_one(imgs[i % 8]).score, range(32)))
        assert together == [alone[i % 8] for i in range(32)]
