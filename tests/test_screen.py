"""Screening: the Screener API, ra-sdk screen (results, exit codes, bad input, resume) and ra-sdk demo."""

from __future__ import annotations

import csv
import json
import os
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
from ra_sdk.io.write import write_nifti, write_png
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
    # Decoding in processes: the same rows, bit for bit (the decode mode is not a setting of the results).
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(tmp_path / "op"), "--backend", "onnxruntime", "--device", "cpu", "--decode", "processes"])
    assert r.exit_code == 0, r.output
    assert [(x["study"], x["score"]) for x in csv.DictReader(open(tmp_path / "op" / "results.csv"))] == [(x["study"], x["score"]) for x in rows]
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(tmp_path / "or"), "--decode", "processes", "--ray", "local"])
    assert r.exit_code == 2 and "--decode processes is for screening on this machine" in r.output
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--engine", str(tmp_path / "nope.plan")])
    assert r.exit_code == 1 and "no such engine file" in r.output
    ro = tmp_path / "ro"
    ro.write_text("a file, not a folder")
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(ro / "x")])
    assert r.exit_code == 1 and "not writable" in r.output



def _strict_json(line: str):
    def refuse(const: str):
        raise ValueError(f"{const} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_a_small_foreground_scores_finite_and_a_non_finite_score_is_a_failure(tmp_path, screener, monkeypatch):
    """A 10 x 10 bright patch on black: fewer foreground pixels than the engine's top-k
    (5% of the image); it once scored -inf and wrote -Infinity into results.jsonl."""
    dot = np.zeros((128, 128), np.uint8)
    dot[60:70, 60:70] = 200
    write_png(tmp_path / "in" / "dot.png", dot)
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--backend", "onnxruntime", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    row = _strict_json((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    assert row["error"] is None and np.isfinite(row["score"]) and row["score"] >= 0

    real = screener.scorer.score

    def nan_second(images, **kw):  # an engine that gives NaN for one image
        m, s, rc = real(images, **kw)
        s = s.copy()
        s[1:2] = np.nan
        return m, s, rc

    monkeypatch.setattr(screener.scorer, "score", nan_second)
    ok = np.zeros((128, 128), np.float32)
    ok[20:100, 20:100] = 0.5
    res = screener.screen([ok, ok])
    assert res[0].error is None and np.isfinite(res[0].score)
    assert res[1].score is None and res[1].error_kind == "non-finite" and "not finite" in res[1].error


class _KillsItsDecoder:
    """A study whose decoding kills the process decoding it (as a crashing codec would):
    a spawned decode process rebuilds it, and dies."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_decode_processes_give_the_threads_results_and_survive_a_crashing_decoder(tmp_path, screener, normal_images):
    _write_pngs(tmp_path, normal_images[:6])
    (tmp_path / "notes.txt").write_text("not an image")
    items: list = [tmp_path / f"s{i:03d}.png" for i in range(6)] + [tmp_path / "notes.txt", tmp_path / "missing.png", normal_images[6]]
    want = screener.screen(items)
    procs = ra_sdk.load(backend="onnxruntime", device="cpu", batch_size=8, decode="processes")
    got = procs.screen(items, workers=2)
    assert [(r.study, r.score, r.error_kind) for r in got] == [(r.study, r.score, r.error_kind) for r in want]
    assert want[0].score is not None and want[6].error_kind and want[7].error_kind
    # One study kills its decode process: that study alone fails, every other gives its result.
    crashing = [*items[:3], _KillsItsDecoder(), *items[3:]]
    got = procs.screen(crashing, workers=2)
    assert got[3].error_kind == "decoder-crash" and got[3].score is None and "killed the decode process" in got[3].error
    assert [(r.score, r.error_kind) for r in got[:3] + got[4:]] == [(r.score, r.error_kind) for r in want]
    assert [r.study for r in got[:3] + got[4:-1]] == [r.study for r in want[:-1]]  # the array's id is its index
    with pytest.raises(ra_sdk.ConfigError, match="decode must be one of threads, processes"):
        ra_sdk.load(backend="onnxruntime", device="cpu", decode="fibers")


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
    from ra_sdk.info import cpu_int8_dot

    # which backend and precision ran ("auto": int8 on a CPU with VNNI, the bundled engine's passed)
    assert f"[backend onnxruntime, {'int8' if cpu_int8_dot() else 'fp32'}]" in r.output


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
