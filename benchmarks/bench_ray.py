"""Screening on Ray vs local screening, on this machine: images/s of ``screen --ray`` with
1 and 2 scoring actors against ``ra-sdk screen`` on the same 2,000 demo studies, and Ray's
fixed overhead (cluster start, the probe, start to first result).

Method: one local Ray (all CPUs) started once and timed; then rounds, each running local,
Ray with 1 actor and Ray with 2 actors in turn into fresh output folders (interleaved, so
drift of the machine hits each alike); medians over rounds. Throughput is images / wall
time of the run (discovery to results.csv); "first result" is the time from the call to
the first study written. Every run's results.csv is compared with the local one.

    python -m benchmarks.bench_ray [--studies 2000] [--rounds 2] [--out benchmarks/results/ray_cpu.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, write_json


def timed_run(root: Path, out: Path, screener: Any) -> dict[str, Any]:
    from ra_sdk.run import run

    first: list[float] = []
    t0 = time.perf_counter()
    summary, _ = run(root, out, screener, resume=False, on_result=lambda r: first or first.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    return {"images": summary.images, "studies": summary.studies, "wall_s": wall, "images_per_s": summary.images / wall,
            "first_result_s": (first[0] - t0) if first else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/ray_cpu.json")
    args = ap.parse_args()

    from ra_sdk.data.demo_studies import DemoSpec, write_demo_studies
    from ra_sdk.data.pathology import TYPES
    from ra_sdk.distributed import RAY_REQUIREMENT, RayScreener, connect
    from ra_sdk.screen import Screener

    n_types = len(TYPES)
    per_type = max(1, args.studies // (2 * n_types))
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_studies(Path(tmp) / "demo", DemoSpec(n_normal=args.studies - per_type * n_types, n_per_type=per_type, n_volumes=10))
        root = Path(tmp) / "demo" / "studies"
        cpus = os.cpu_count() or 1
        t = time.perf_counter()
        resources = connect("local")
        cluster_start = time.perf_counter() - t
        configs = {"local": None, "ray-1-actor": (1, 1.0), "ray-2-actors": (2, 0.5)}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in configs}
        probe: dict[str, float] = {}
        with Screener(backend="onnxruntime", device="cpu") as local:
            for i in range(args.rounds):
                for name, cfg in configs.items():
                    out = Path(tmp) / f"{name}-{i}"
                    if cfg is None:
                        runs[name].append(timed_run(root, out, local))
                    else:
                        t = time.perf_counter()
                        with RayScreener(backend="onnxruntime", device="cpu", actors=cfg[0], cpus_per_actor=cfg[1]) as rs:
                            probe.setdefault(name, time.perf_counter() - t)
                            runs[name].append(timed_run(root, out, rs))
                    same = (out / "results.csv").read_bytes() == (Path(tmp) / "local-0" / "results.csv").read_bytes()
                    runs[name][-1]["results_identical_to_local"] = same
                    print(f"round {i} {name}: {runs[name][-1]['images_per_s']:.1f} images/s, first result {runs[name][-1]['first_result_s']:.2f} s, identical {same}", flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    res = {
        "machine": machine(),
        "ray": RAY_REQUIREMENT,
        "cluster": {"cpus": resources.get("CPU"), "gpus": resources.get("GPU", 0.0), "host_cpus": cpus},
        "studies": runs["local"][0]["studies"],
        "images": runs["local"][0]["images"],
        "rounds": args.rounds,
        "configs": {"local": "ra-sdk screen (2 decode threads, ONNX Runtime on all cores)",
                    "ray-1-actor": "--ray --actors 1 --cpus-per-actor 1 (1 ONNX Runtime thread)",
                    "ray-2-actors": "--ray --actors 2 --cpus-per-actor 0.5 (1 thread each)"},
        "runs": runs,
        "images_per_s": {k: med(k, "images_per_s") for k in runs},
        "ratio_vs_local": {k: statistics.median(r["images_per_s"] / loc["images_per_s"] for r, loc in zip(runs[k], runs["local"])) for k in runs},
        "overhead_s": {
            "cluster_start": cluster_start,
            "probe_and_setup": probe,
            "first_result": {k: med(k, "first_result_s") for k in runs},
        },
        "all_identical": all(r["results_identical_to_local"] for v in runs.values() for r in v),
    }
    print(write_json(args.out, res))
    print({k: round(v, 1) for k, v in res["images_per_s"].items()}, res["overhead_s"])


if __name__ == "__main__":
    main()
