"""``ra-sdk screen --ray`` on a local Ray started by the tests (2 CPUs, actors on half a
CPU so the decode tasks are never starved): the same rows as local screening, an actor
killed mid-run, the driver killed mid-run and restarted.

CI installs ``ra-sdk[ray]`` and sets RA_SDK_REQUIRE_RAY=1, so a missing Ray fails there
instead of skipping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile import bad_inputs, good_studies

from ra_sdk.data.demo_studies import DemoSpec, write_demo_studies
from ra_sdk.journal import JOURNAL, read_journal
from ra_sdk.run import run
from ra_sdk.screen import Screener

if os.environ.get("RA_SDK_REQUIRE_RAY"):
    import ray
else:
    ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow
CPUS_PER_ACTOR = 0.5
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray for this module, started the way ``--ray local`` starts one."""
    from ra_sdk.distributed import connect

    saved = {k: os.environ.get(k) for k in AUTH_VARS}
    if ray.is_initialized():
        ray.shutdown()
    resources = connect("local", num_cpus=2)
    assert resources["CPU"] == 2
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Demo studies (DICOM series, PNG, NIfTI), every reader's good files and 40+ kinds of
    bad input in one tree; and the local run's output as the reference."""
    base = tmp_path_factory.mktemp("ray")
    write_demo_studies(base / "demo", DemoSpec(n_normal=40, n_per_type=4, n_volumes=3))
    root = base / "demo" / "studies"
    good_studies(root / "good")
    expected_bad = bad_inputs(root / "bad")
    ref = base / "local"
    with Screener() as s:
        summary, _ = run(root, ref, s)
    assert summary.failed >= len(expected_bad) - 1 and summary.screened > 60
    return root, ref


def _rows(out: Path) -> list[tuple[str, str, str, str]]:
    import csv

    with open(out / "results.csv", newline="") as fh:
        return [(r["study"], r["score"], r["flagged"], r["error"]) for r in csv.DictReader(fh)]


def _audit():
    """A Ray actor told every study a scoring actor scored (ra_sdk.distributed's counter)."""

    @ray.remote(num_cpus=0)
    class Audit:
        def __init__(self):
            self.ids: list[str] = []
            self.pids: list[int] = []

        def add(self, ids, worker):
            self.ids += ids
            self.pids.append(worker["pid"])

        def get(self):
            return self.ids, self.pids

    return Audit


def test_ray_screen_gives_the_local_rows_and_files(cluster, studies, tmp_path):
    """The CLI with --ray: results.csv byte-identical to ra-sdk screen (scores, flags,
    reasons of the bad inputs, order), the same files, and the same journal settings, so a
    local run's folder resumes under Ray without screening anything again."""
    from ra_sdk.cli import main

    root, ref = studies
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["screen", str(root), "--out", str(out), "--ray", "--cpus-per-actor", str(CPUS_PER_ACTOR), "--no-progress"])
    assert res.exit_code == 3, res.output  # 3: some studies failed (the bad inputs), each with a row
    assert (out / "results.csv").read_bytes() == (ref / "results.csv").read_bytes()
    assert (out / "results.jsonl").read_bytes() == (ref / "results.jsonl").read_bytes()
    for name in ("summary.json", "run.json", JOURNAL):
        assert (out / name).is_file()
    a, b = json.loads((out / "run.json").read_text()), json.loads((ref / "run.json").read_text())
    assert a["settings"] == b["settings"]
    # A folder screened locally resumes under Ray: nothing is scored again.
    from ra_sdk.distributed import RayScreener

    audit = _audit().remote()
    with RayScreener(actors=1, cpus_per_actor=CPUS_PER_ACTOR, counter=audit) as rs:
        summary, _ = run(root, ref, rs)
    assert summary.skipped_resumed == summary.studies and ray.get(audit.get.remote())[0] == []
    assert _rows(ref) == _rows(out)


def test_an_actor_killed_mid_run_loses_nothing_and_writes_nothing_twice(cluster, studies, tmp_path):
    """SIGKILL of the scoring actor's worker process while it works: Ray Data's pool
    restarts it (max_restarts=-1) and runs its batch again (max_task_retries=-1); every
    study appears once, with the local scores."""
    from ra_sdk.distributed import RayScreener

    root, ref = studies
    audit = _audit().remote()
    killed: list[int] = []

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            ids, pids = ray.get(audit.get.remote())
            if len(ids) >= 12 and pids:
                os.kill(pids[-1], signal.SIGKILL)
                killed.append(pids[-1])
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    with RayScreener(actors=1, cpus_per_actor=CPUS_PER_ACTOR, studies_per_task=4, counter=audit) as rs:
        t.start()
        summary, _ = run(root, tmp_path / "out", rs)
    t.join()
    assert killed, "the actor was never killed (the run ended first)"
    _, pids = ray.get(audit.get.remote())
    assert set(pids) - set(killed), "no restarted actor scored anything after the kill"
    rows = _rows(tmp_path / "out")
    assert len(rows) == len({r[0] for r in rows})  # each study once
    assert rows == _rows(ref)
    assert summary.studies == len(rows)


DRIVER = """
import sys, ray
ray.init(address=sys.argv[1], namespace="ra-sdk-test", logging_level="ERROR")
from ra_sdk.distributed import screen
audit = ray.get_actor(sys.argv[4], namespace="ra-sdk-test")
screen(sys.argv[2], sys.argv[3], actors=1, cpus_per_actor=float(sys.argv[5]), studies_per_task=4, counter=audit)
"""


def test_a_killed_driver_restarts_where_it_stopped(cluster, studies, tmp_path):
    """The driver (a separate process on the same cluster) is SIGKILLed mid-run and started
    again: rows identical to the local run, and the second run scores only what the first
    did not finish (engine calls counted by an audit actor per run)."""
    root, ref = studies
    out = tmp_path / "out"
    audits = [_audit().options(name=f"audit{i}", namespace="ra-sdk-test", lifetime="detached").remote() for i in (1, 2)]
    ray.get([a.get.remote() for a in audits])
    env = dict(os.environ)  # with the local cluster's token (RAY_AUTH_TOKEN)

    def driver(audit: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", DRIVER, cluster, str(root), str(out), audit, str(CPUS_PER_ACTOR)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    first = driver("audit1")
    journal = out / JOURNAL
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 15:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert first.wait(30) == -signal.SIGKILL, (first.returncode, first.stderr.read().decode()[-2000:] if first.stderr else "")
    finished_first = set(read_journal(journal))
    total = len(_rows(ref))
    assert 0 < len(finished_first) < total

    second = driver("audit2")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err.decode()[-3000:]
    scored_second, _ = ray.get(audits[1].get.remote())
    assert not set(scored_second) & finished_first, "a study finished before the kill was screened again"
    assert len(scored_second) == len(set(scored_second))
    failed_before_engine = {r[0] for r in _rows(ref) if r[3]}  # bad inputs never reach the engine
    assert set(scored_second) == {r[0] for r in _rows(ref)} - finished_first - failed_before_engine
    assert _rows(out) == _rows(ref)
    for a in audits:
        ray.kill(a)
