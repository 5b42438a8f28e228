"""The DICOM node's latency and footprint, and the low-latency path per backend.

- node: 100 single-image studies, each C-STOREd in its own association by pynetdicom in
  this process, one after the other (no queueing); latency = from the moment the C-STORE
  response is back at the sender to the moment the node has written the study's row (and
  SC + SEG). It includes the association release and the ``--study-idle`` quiet period,
  reported separately.
- worklist_rewrite: seconds to rewrite results.csv/.jsonl + summary.json for a node that
  has screened 1,000 / 10,000 / 100,000 studies (its own rows repeated): what the node's
  rewrite policy bounds (ra_sdk.node.service).
- screen_one: p50/p99 of ``Screener.screen_one`` at batch 1 per backend and precision
  usable here, after warm-up.
- memory: resident set of an idle ``ra-sdk listen`` process (VmRSS), and its peak (VmHWM)
  after the studies above.

    python -m benchmarks.bench_node [--studies 100] [--idle 0.2] [--out benchmarks/results/node_cpu.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import machine, write_json


def pct(v: list[float]) -> dict[str, float]:
    a = np.asarray(v) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()), "n": len(v)}


def node_latency(tmp: Path, n: int, idle: float) -> dict[str, Any]:
    from pydicom import dcmread
    from pynetdicom import AE

    from ra_sdk.data.augment import normal_batch
    from ra_sdk.io.write import write_dicom
    from ra_sdk.node import Node, NodeConfig
    from ra_sdk.screen import Screener

    imgs = normal_batch("test", n, start=0)
    files = [write_dicom(tmp / "src" / f"{i}.dcm", (imgs[i] * 3000).astype(np.uint16), patient_id="B", study_uid=f"1.2.826.0.9.{i + 1}", series_uid=f"1.2.826.0.9.{i + 1}.1")
             for i in range(n)]
    done: dict[str, float] = {}
    ev = threading.Event()

    def on_row(uid: str, row: dict, latency: float) -> None:
        done[uid] = time.monotonic()
        ev.set()

    lat, release = [], []
    with Node(NodeConfig(out=tmp / "out", port=0, study_idle=idle), Screener(backend="onnxruntime", device="cpu"), on_row=on_row) as node:
        ds0 = dcmread(files[0])
        for i, f in enumerate(files):
            ds = dcmread(f)
            ae = AE(ae_title="BENCH")
            ae.add_requested_context(ds0.SOPClassUID, ds0.file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", node.port, ae_title="RASDK")
            ev.clear()
            status = assoc.send_c_store(ds)
            t = time.monotonic()
            assoc.release()
            release.append(time.monotonic() - t)
            assert int(status.Status) == 0
            if not ev.wait(60):
                raise RuntimeError(f"no row for study {i}")
            lat.append(done[f"1.2.826.0.9.{i + 1}"] - t)
    return {"studies": n, "study_idle_s": idle, "latency": pct(lat), "latency_minus_idle": pct([v - idle for v in lat]), "release": pct(release)}


def screen_one_latency(repeat: int = 200) -> dict[str, Any]:
    from ra_sdk._optional import is_installed
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.screen import Screener

    img = normal_batch("test", 1, start=5)[0]
    out = {}
    combos = [("onnxruntime", "fp32"), ("onnxruntime", "int8")] + ([("torch", "fp32")] if is_installed("torch") else [])
    for backend, prec in combos:
        with Screener(backend=backend, device="cpu", precision=prec) as s:
            for _ in range(10):
                s.screen_one(img)
            ts = []
            for _ in range(repeat):
                t = time.perf_counter()
                s.screen_one(img)
                ts.append(time.perf_counter() - t)
            out[f"{backend}-cpu-{s.precision}"] = pct(ts)
    return out


def idle_memory(tmp: Path) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, "-m", "ra_sdk.cli", "listen", "--port", "0", "--out", str(tmp / "idle"), "--backend", "onnxruntime", "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on port" in line:
            break
    time.sleep(3.0)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    proc.terminate()
    proc.wait(30)
    field = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in status.splitlines() if ":" in ln)}
    return {"idle_rss_mb": int(field["VmRSS"].split()[0]) / 1024, "peak_rss_mb": int(field["VmHWM"].split()[0]) / 1024}


def worklist_rewrite(out: Path, sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> dict[str, Any]:
    """Seconds to rewrite the worklist (results.csv/.jsonl + summary.json) of a node that has
    screened N studies: the node's own rows, repeated under new study UIDs."""
    from ra_sdk import results as res
    from ra_sdk.results import RunSummary

    rows = res.read_rows(out)
    figures: dict[str, Any] = {}
    for n in sizes:
        many = [{**rows[i % len(rows)], "study": f"1.2.826.0.9.{i + 1}"} for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            ordered = res.write_results(Path(tmp), many)
            res.write_summary(Path(tmp), RunSummary.of(ordered, resumed=0, images=n, seconds=0.0))
            figures[str(n)] = {"seconds": time.perf_counter() - t, "csv_mb": (Path(tmp) / res.RESULTS_CSV).stat().st_size / 1e6}
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=100)
    ap.add_argument("--idle", type=float, default=0.2)
    ap.add_argument("--out", default="benchmarks/results/node_cpu.json")
    args = ap.parse_args()
    import logging

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        res = {"machine": machine(), "node": node_latency(Path(tmp), args.studies, args.idle)}
        res["worklist_rewrite"] = worklist_rewrite(Path(tmp) / "out")
        res["screen_one"], res["memory"] = screen_one_latency(), idle_memory(Path(tmp))
    print(write_json(args.out, res))
    n = res["node"]
    print(f"node: {n['studies']} single-image studies, --study-idle {n['study_idle_s']} s: C-STORE response to row p50 {n['latency']['p50_ms']:.0f} ms, "
          f"p99 {n['latency']['p99_ms']:.0f} ms (minus the idle period: p50 {n['latency_minus_idle']['p50_ms']:.0f}, p99 {n['latency_minus_idle']['p99_ms']:.0f})")
    print("worklist rewrite: " + ", ".join(f"{k} rows {v['seconds']:.2f} s" for k, v in res["worklist_rewrite"].items()))
    for k, v in res["screen_one"].items():
        print(f"screen_one {k}: p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms")
    print(f"idle node: {res['memory']['idle_rss_mb']:.0f} MB resident")


if __name__ == "__main__":
    main()
