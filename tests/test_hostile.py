"""Nothing crashes, nothing stale, nothing lost: screening against hostile files, malformed
engines, re-runs with other settings, a full disk, and a home folder that must stay empty.

The corpus (``hostile.py``) is generated at test time. Tests run as root here, where file
modes do not stop writes; "nothing written outside OUT" is therefore checked by snapshotting
every file around OUT (and HOME) before and after, not by a read-only parent.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hostile import PYDICOM_FILES, bad_inputs, good_studies, malformed_engines, odd_but_valid

from ra_sdk.cli import main
from ra_sdk.data import DEMO_ENGINE
from ra_sdk.io.write import write_dicom, write_png

#: the address-space cap of a screening run over the corpus (a clean run needs ~1.1 GiB;
#: any bad file decoded in full would need several GiB)
AS_CAP = 2 << 30
BUDGET_MB = "256"  # --memory-budget: 128 MB per study with 2 decode threads


def cli(*args: str, home: Path, cap: int | None = None, fsize: int | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``ra-sdk ARGS`` in a subprocess with HOME set (and an address-space / file-size cap)."""
    cmd = [sys.executable, "-m", "ra_sdk.cli", *args]
    limits = [f"--as={cap}"] if cap else []
    limits += [f"--fsize={fsize}"] if fsize else []
    if limits:
        cmd = ["prlimit", *limits, *cmd]
    env = {**os.environ, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """Every path under root (but ``skip``) with its size and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath).resolve() == skip.resolve():
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if skip is not None and p == skip:
                continue
            st = os.lstat(p)
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return {r["study"]: r for r in csv.DictReader(fh)}


def csv_lines(out: Path) -> dict[str, str]:
    """The raw CSV line of each study (byte-identity of rows)."""
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        return {r[0]: ",".join(r) for r in reader}


def assert_clean(r: subprocess.CompletedProcess) -> None:
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text[-3000:]
    assert len(r.stderr.strip().splitlines()) <= 1, r.stderr[-3000:]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


# ----------------------------------------------------------------------- study files
@pytest.mark.slow
def test_hostile_files_become_rows_under_a_memory_cap(tmp_path, home):
    root = tmp_path / "studies"
    good = good_studies(root)
    out_good = tmp_path / "out-good"
    r = cli("screen", str(root), "--out", str(out_good), "--memory-budget", BUDGET_MB, "--no-progress", home=home)
    assert r.returncode == 0, r.stderr[-2000:]
    expect = bad_inputs(root / "bad")
    odd = odd_but_valid(root / "odd")
    assert len(expect) >= 40, len(expect)
    out = tmp_path / "out"
    before = snapshot(tmp_path, skip=out)
    r = cli("screen", str(root), "--out", str(out), "--memory-budget", BUDGET_MB, "--no-progress", home=home, cap=AS_CAP)
    assert r.returncode == 3, (r.returncode, r.stderr[-3000:])  # documented: 3 = some studies failed
    assert_clean(r)
    rows = rows_of(out)
    for name, kind in expect.items():
        row = rows[f"bad/{name}"]
        assert row["score"] == "" and row["error_kind"] == kind, (name, row["error_kind"], row["error"])
        err = row["error"]
        assert "\n" not in err and str(root / "bad") in err, (name, err)  # one line naming the file
        assert len(err) > len(str(root / "bad" / name)) + 5, (name, err)  # and a reason
    for name, note in odd.items():
        row = rows[f"odd/{name}"]
        assert row["error"] == "" and row["score"] != "", (name, row)
        assert note in row["notes"], (name, row["notes"])
    # the good studies' rows are byte-identical to a run without the bad files
    lines, ref = csv_lines(out), csv_lines(out_good)
    assert set(good) <= set(ref)
    for sid in good:
        assert lines[sid] == ref[sid], sid
    # nothing was written outside OUT, the home folder included
    assert snapshot(tmp_path, skip=out) == before
    assert not any(home.iterdir())
    # decoding in processes gives every row byte for byte (failures, notes, scores)
    out_p = tmp_path / "out-processes"
    r = cli("screen", str(root), "--out", str(out_p), "--memory-budget", BUDGET_MB, "--no-progress", "--decode", "processes", home=home)
    assert r.returncode == 3, (r.returncode, r.stderr[-3000:])
    assert csv_lines(out_p) == csv_lines(out)
    assert not any(home.iterdir())


def test_a_series_keeps_what_decodes_and_ids_never_collide(tmp_path):
    from ra_sdk.io import discover

    rng = np.random.default_rng(3)
    img = lambda: (rng.random((64, 64)) * 3000).astype(np.uint16)  # noqa: E731
    for z in range(3):
        write_dicom(tmp_path / "s" / f"{z}.dcm", img(), patient_id="P", study_uid="1.5", series_uid="1.5.1", instance=z + 1, position_z=float(z))
    bad = write_dicom(tmp_path / "s" / "3.dcm", img(), patient_id="P", study_uid="1.5", series_uid="1.5.1", instance=4, position_z=3.0)
    bad.write_bytes(bad.read_bytes()[:-3000])
    # the same series UID in another folder, and a second image size in the first
    write_dicom(tmp_path / "t" / "0.dcm", img(), patient_id="P", study_uid="1.5", series_uid="1.5.1")
    write_dicom(tmp_path / "t" / "1.dcm", img(), patient_id="P", study_uid="1.5", series_uid="1.5.1", instance=2, position_z=1.0)
    write_dicom(tmp_path / "s" / "big.dcm", (rng.random((96, 80)) * 3000).astype(np.uint16), patient_id="P", study_uid="1.5", series_uid="1.5.1", instance=9)
    # a file whose name is a series' id
    write_dicom(tmp_path / "t" / "1.5.1", img(), patient_id="Q", study_uid="1.6", series_uid="1.6.1")
    studies = {s.id: s for s in discover(tmp_path)}
    # one study per folder and image size; a lone file keeps its path; a collision gets #2
    assert sorted(studies) == ["s/1.5.1@64x64", "s/big.dcm", "t/1.5.1", "t/1.5.1#2"], sorted(studies)
    from ra_sdk import load

    with load(backend="onnxruntime", device="cpu") as screener:
        out = {s.id: r for s, r in zip(studies.values(), screener.screen(list(studies.values())))}
    s = out["s/1.5.1@64x64"]
    assert s.error is None and s.n_slices == 3 and "1 of 4 files not screened (corrupt:" in "; ".join(s.notes), (s.error, s.notes)
    assert all(r.error is None for r in out.values()), {k: r.error for k, r in out.items()}


def test_reader_failures_name_the_real_cause(tmp_path, monkeypatch):
    """Permission errors are not "corrupt", an unlistable folder gets a row, and anything a
    reader raises becomes a one-line reason rather than the end of the run."""
    import ra_sdk.io.limits as limits
    from ra_sdk import load
    from ra_sdk.io import discover, read_study

    write_png(tmp_path / "locked.png", (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8))
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "inside.png", np.eye(32, dtype=np.uint8) * 200)
    real_access, real_walk = os.access, os.walk
    monkeypatch.setattr(limits.os, "access", lambda p, mode: False if str(p).endswith("locked.png") else real_access(p, mode))

    def walk(top, **kw):
        for dirpath, dirnames, filenames in real_walk(top, **kw):
            if "sub" in dirnames:
                dirnames.remove("sub")
                kw["onerror"](PermissionError(13, "Permission denied", str(Path(dirpath) / "sub")))
            yield dirpath, dirnames, filenames

    monkeypatch.setattr("ra_sdk.io.discovery.os.walk", walk)
    studies = {s.id: s for s in discover(tmp_path)}
    assert set(studies) == {"locked.png", "sub/"}
    with pytest.raises(Exception, match="permission denied") as err:
        read_study(studies["locked.png"])
    assert type(err.value).__name__ == "AccessError"
    with load(backend="onnxruntime", device="cpu") as screener:
        res = {r.study: r for r in screener.screen(list(studies.values()))}
    assert res["locked.png"].error_kind == "no-access" and "permission denied" in res["locked.png"].error
    assert res["sub/"].error_kind == "no-access" and "cannot list folder: Permission denied" in res["sub/"].error

    # a decoder raising something no one expected
    monkeypatch.setattr("ra_sdk.io.discovery.read_raster", lambda *a, **k: (_ for _ in ()).throw(KeyError("weird\ninternal state")))
    write_png(tmp_path / "ok.png", np.eye(32, dtype=np.uint8) * 200)
    with load(backend="onnxruntime", device="cpu") as screener:
        r = screener.screen([tmp_path / "ok.png"])[0]
    assert r.error_kind == "corrupt" and "KeyError" in r.error and "\n" not in r.error and "ok.png" in r.error


# ----------------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("engines")
    return folder, malformed_engines(folder, DEMO_ENGINE)


def test_malformed_engines_fail_in_one_line(engines, tmp_path):
    folder, expect = engines
    assert len(expect) >= 30, len(expect)
    write_png(tmp_path / "in" / "a.png", (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    for name, text in expect.items():
        r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--engine", str(folder / name), "--out", str(tmp_path / f"o-{name}"), "--backend", "onnxruntime", "--device", "cpu"])
        assert isinstance(r.exception, SystemExit) and r.exit_code == 1, (name, r.exit_code, r.output[-1500:])
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, r.output)
        assert name in lines[0] and text in lines[0], (name, text, lines[0])
    # the engine that is fine, to show the harness can pass
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--engine", str(DEMO_ENGINE), "--out", str(tmp_path / "ok"), "--backend", "onnxruntime", "--device", "cpu"])
    assert r.exit_code == 0, r.output


@pytest.mark.slow
def test_engine_bombs_stay_under_a_memory_cap(engines, tmp_path, home):
    folder, _ = engines
    for name in ("member-3gib.onnx-bundle", "meta-2gib.onnx-bundle", "meta-hidden-40mb.onnx-bundle", "fifo.onnx-bundle", "/dev/zero"):
        path = Path(name) if name.startswith("/") else folder / name
        t = time.perf_counter()
        r = cli("inspect", str(path), home=home, cap=1 << 30, timeout=60)
        assert r.returncode == 1 and time.perf_counter() - t < 30, (name, r.returncode, r.stderr[-1500:])
        assert_clean(r)
        assert r.stderr.startswith(f"error: {path}"), (name, r.stderr)


def test_uncalibrated_engine_warns_and_plain_onnx_or_plan_says_what_it_is(engines, tmp_path):
    from ra_sdk.engine import read_engine, write_engine

    eng = read_engine(DEMO_ENGINE)
    eng.meta.calibration = None
    write_engine(tmp_path / "uncal.onnx-bundle", eng.meta, eng.members)
    write_png(tmp_path / "in" / "a.png", (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--engine", str(tmp_path / "uncal.onnx-bundle"), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert r.exit_code == 0 and "has no calibration" in r.output and "ra-sdk calibrate" in r.output, r.output
    folder, _ = engines
    r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--engine", str(folder / "plain.onnx"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 1 and "ra-sdk export" in r.output
    for bad in (["--batch-size", "0"], ["--threshold", "nan"], ["--workers", "0"]):
        r = CliRunner().invoke(main, ["screen", str(tmp_path / "in"), "--out", str(tmp_path / "o3"), *bad])
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)


# ----------------------------------------------------------------------------- resume
def _demo_pngs(folder: Path, n: int, start: int = 0, scale: float = 1.0) -> None:
    from ra_sdk.data.augment import normal_batch

    for i, img in enumerate(normal_batch("test", n, start=500 + start)):
        write_png(folder / f"s{i:03d}.png", (np.clip(img * scale, 0, 1) * 255).astype(np.uint8))


def _screen(*args: str) -> object:
    return CliRunner().invoke(main, ["screen", *args, "--backend", "onnxruntime", "--device", "cpu", "--no-progress"])


def test_resume_never_serves_rows_made_with_other_settings(tmp_path):
    from ra_sdk.engine import read_engine, write_engine

    day1, day2 = tmp_path / "day1", tmp_path / "day2"
    _demo_pngs(day1, 4)
    _demo_pngs(day2, 4, start=40)
    out = tmp_path / "R"
    assert _screen(str(day1), "--out", str(out)).exit_code == 0
    first = rows_of(out)
    eng = read_engine(DEMO_ENGINE)
    eng.meta.source = {**eng.meta.source, "copy": True}  # same weights, other bytes: another engine
    other = write_engine(tmp_path / "other.onnx-bundle", eng.meta, eng.members)
    cases = {
        "studies_root": [str(day2), "--out", str(out)],
        "engine_sha256": [str(day1), "--out", str(out), "--engine", str(other)],
        "threshold": [str(day1), "--out", str(out), "--threshold", "1.5"],
        "save_maps": [str(day1), "--out", str(out), "--save-maps"],
        "previews": [str(day1), "--out", str(out), "--report"],
    }
    for key, args in cases.items():
        r = _screen(*args)
        assert r.exit_code == 1, (key, r.output)
        line = r.output.strip().splitlines()[-1]
        assert key in line and "--no-resume" in line and line.count("\n") == 0, (key, line)
        assert rows_of(out) == first  # refused, untouched
    # afresh with --no-resume: the same rows a new folder gets
    r = _screen(str(day2), "--out", str(out), "--no-resume", "--save-maps")
    assert r.exit_code == 0, r.output
    r2 = _screen(str(day2), "--out", str(tmp_path / "fresh"), "--save-maps")
    assert r2.exit_code == 0
    assert csv_lines(out).keys() == csv_lines(tmp_path / "fresh").keys()
    assert [v.split(",")[1:4] for v in csv_lines(out).values()] == [v.split(",")[1:4] for v in csv_lines(tmp_path / "fresh").values()]
    assert len(list((out / "maps").glob("*.npy"))) == 4
    # same settings, one file replaced by another image of the same name: it is screened again
    before = rows_of(out)
    _demo_pngs(day2, 1, start=90, scale=0.5)
    os.utime(day2 / "s000.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    r = _screen(str(day2), "--out", str(out), "--save-maps")
    assert r.exit_code == 0 and "3 already done" in r.output, r.output
    after = rows_of(out)
    assert after["s000.png"]["score"] != before["s000.png"]["score"]
    assert all(after[k] == before[k] for k in before if k != "s000.png")
    # a folder with results that ra-sdk did not write is not overwritten
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "results.csv").write_text("mine\n")
    r = _screen(str(day1), "--out", str(tmp_path / "theirs"))
    assert r.exit_code == 1 and "choose another --out" in r.output
    assert (tmp_path / "theirs" / "results.csv").read_text() == "mine\n"


@pytest.mark.slow
def test_two_runs_on_one_out_the_second_is_refused(tmp_path, home):
    _demo_pngs(tmp_path / "in", 60)
    out = tmp_path / "R"
    args = ["screen", str(tmp_path / "in"), "--out", str(out), "--batch-size", "1", "--workers", "1", "--no-progress", "--device", "cpu"]
    first = subprocess.Popen([sys.executable, "-m", "ra_sdk.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HOME": str(home)})
    deadline = time.time() + 120
    while time.time() < deadline and not (out / ".ra-sdk-journal.jsonl").exists():
        time.sleep(0.05)
    second = cli(*args, home=home)
    _, first_err = first.communicate(timeout=300)
    assert second.returncode == 1 and "another ra-sdk run (pid" in second.stderr and "--out" in second.stderr, second.stderr
    assert_clean(second)
    assert first.returncode == 0, first_err[-2000:]
    assert len(rows_of(out)) == 60


@pytest.mark.slow
def test_out_inside_studies_is_never_screened(tmp_path):
    _demo_pngs(tmp_path / "in", 3)
    out = tmp_path / "in" / "results"
    for _ in range(3):
        r = _screen(str(tmp_path / "in"), "--out", str(out), "--report", "--save-maps")
        assert r.exit_code == 0 and "3 studies" in r.output, r.output


@pytest.mark.slow
def test_a_full_disk_stops_cleanly_and_the_rerun_completes(tmp_path, home):
    _demo_pngs(tmp_path / "in", 40)
    fresh = tmp_path / "fresh"
    r = cli("screen", str(tmp_path / "in"), "--out", str(fresh), "--no-progress", "--device", "cpu", home=home)
    assert r.returncode == 0
    # room for run.json (it holds the engine's metadata, whatever its size) and for the
    # journal's header and a few rows, never for the whole journal
    lines = (fresh / ".ra-sdk-journal.jsonl").read_bytes().splitlines(keepends=True)
    limit = max((fresh / "run.json").stat().st_size, len(b"".join(lines[:5]))) + 1
    assert limit < sum(map(len, lines)), "the journal must outgrow the limit"
    out = tmp_path / "out"
    r = cli("screen", str(tmp_path / "in"), "--out", str(out), "--no-progress", "--device", "cpu", home=home, fsize=limit)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert_clean(r)
    assert "File too large" in r.stderr and "run the same command again" in r.stderr, r.stderr
    journal = (out / ".ra-sdk-journal.jsonl").read_text()
    assert journal.endswith("\n") and all(json.loads(line) for line in journal.splitlines())  # no torn line
    done = len(journal.splitlines()) - 1
    assert 0 < done < 40, done
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # no half-written file left
    r = cli("screen", str(tmp_path / "in"), "--out", str(out), "--no-progress", "--device", "cpu", home=home)
    assert r.returncode == 0 and f"{done} already done" in r.stdout, r.stdout + r.stderr
    got, ref = rows_of(out), rows_of(fresh)
    assert got.keys() == ref.keys()
    for k in ref:  # a score does not depend on its batch: the same to the last digit
        assert got[k]["score"] == ref[k]["score"], k
        assert got[k]["flagged"] == ref[k]["flagged"]


# --------------------------------------------------------------------- the home folder
SPAWN_AUDIT = r"""
import sys
log = open(sys.argv.pop(1), "a")
def hook(event, args):
    if event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn", "os.fork", "os.forkpty"):
        log.write(f"{event} {args[:2]!r}\n"); log.flush()
sys.addaudithook(hook)
from ra_sdk.cli import main
sys.argv[0] = "ra-sdk"
main()
"""


@pytest.mark.slow
def test_home_stays_empty_and_no_compiler_is_spawned(tmp_path, home):
    _demo_pngs(tmp_path / "in", 3)
    spawns = tmp_path / "spawns.log"
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool in ("gcc", "cc", "ld", "ldconfig", "objdump", "x86_64-linux-gnu-gcc"):
        (shim / tool).write_text(f"#!/bin/sh\necho {tool} >> {spawns}\nexit 1\n")
        (shim / tool).chmod(0o755)
    env = {**os.environ, "HOME": str(home), "PATH": f"{shim}:{os.environ['PATH']}", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("XDG_CACHE_HOME", None)
    env.pop("ORT_DISABLE_TELEMETRY", None)
    for args in (["info"], ["screen", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--report", "--no-progress"], ["inspect", str(DEMO_ENGINE)]):
        r = subprocess.run([sys.executable, "-c", SPAWN_AUDIT, str(spawns), *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr[-2000:])
    assert not any(home.rglob("*")), sorted(str(p) for p in home.rglob("*"))
    assert spawns.read_text() == "", spawns.read_text()  # the audit hook opened it: nothing was written


# ------------------------------------------------------------- pydicom's own test files
@pytest.mark.skipif(PYDICOM_FILES is None, reason="pydicom test files not installed")
def test_pydicom_files_each_decodable_image_is_screened(tmp_path):
    """Each of pydicom's files in a folder of its own (so series never merge): every file
    pydicom itself decodes to an image with signal is screened; every refusal carries the
    reason pydicom gave."""
    import pydicom

    from ra_sdk import load
    from ra_sdk.io import discover

    assert PYDICOM_FILES is not None
    files = sorted(p for p in PYDICOM_FILES.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", "") and "dicomdir" not in p.name.lower())
    oracle: dict[str, str] = {}  # study id -> "image" or pydicom's own error
    for i, f in enumerate(files):
        (tmp_path / f"{i:03d}").mkdir()
        shutil.copy(f, tmp_path / f"{i:03d}" / (f.name if f.suffix else f.name + ".dcm"))
        try:
            arr = np.asarray(pydicom.dcmread(f).pixel_array, np.float64)
            oracle[f"{i:03d}/{f.name if f.suffix else f.name + '.dcm'}"] = "image" if min(arr.shape[-2:]) >= 16 and np.ptp(arr) > 0 else "no-signal"
        except Exception as err:
            oracle[f"{i:03d}/{f.name if f.suffix else f.name + '.dcm'}"] = " ".join(str(err).split())
    studies = [s for s in discover(tmp_path) if s.id in oracle]
    with load(backend="onnxruntime", device="cpu", batch_size=8) as screener:
        results = {r.study: r for r in screener.screen(studies)}
    images = [k for k, v in oracle.items() if v == "image"]
    screened = [k for k in images if results[k].error is None]
    print(f"pydicom files: {len(oracle)}; decodable images with signal: {len(images)}; screened: {len(screened)}")
    assert len(images) >= 45 and screened == images, [(k, results[k].error) for k in images if results[k].error]
    branches = {"no pixel data": 0, "decoders failed": 0, "other": 0}
    for k, verdict in oracle.items():
        r = results[k]
        if verdict in ("image", "no-signal"):
            continue
        assert r.error is not None and "\n" not in r.error and r.error_kind != "unreadable", (k, r.error)
        if "no 'Pixel Data'" in verdict:  # pydicom: nothing to decode
            branches["no pixel data"] += 1
            assert r.error_kind in ("not-an-image", "corrupt"), (k, r.error_kind, r.error)
        elif "raised by all available plugins" in verdict:  # pydicom's decoders failed: their words come through
            branches["decoders failed"] += 1
            first = verdict.split("plugins: ", 1)[1].split(":", 1)[1].strip()[:30]
            assert r.error_kind in ("unsupported-codec", "corrupt") and first in r.error, (k, first, r.error)
        else:
            branches["other"] += 1
    print("refusals by pydicom's verdict:", branches)
    assert branches["no pixel data"] > 20 and branches["decoders failed"] >= 2, branches


# ---------------------------------------------------------------- the mission's command
@pytest.mark.slow
def test_the_mission_command_line_on_the_demo_studies(tmp_path, home):
    """``ra-sdk screen ./studies/ --engine ra_chest.plan``, word for word: an engine file is
    recognised by its content (meta.json), so a bundle saved under that name is legitimate."""
    r = cli("data", "demo-studies", "--out", str(tmp_path), "--n-normal", "6", "--n-per-type", "1", home=home)
    assert r.returncode == 0
    shutil.copy(DEMO_ENGINE, tmp_path / "ra_chest.plan")
    r = cli("screen", "./studies/", "--engine", "ra_chest.plan", home=home, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(rows_of(tmp_path / "ra-sdk-results")) == 13


def test_torch_backend_runs_the_bundled_engine(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from ra_sdk import load
    from ra_sdk.data.augment import normal_batch

    x = list(normal_batch("test", 4, start=800))
    with load(backend="torch", device="cpu") as t, load(backend="onnxruntime", device="cpu", precision="fp32") as o:
        st = [r.score for r in t.screen(x)]
        so = [r.score for r in o.screen(x)]
    assert t.backend == "torch"
    np.testing.assert_allclose(st, so, rtol=1e-4)
