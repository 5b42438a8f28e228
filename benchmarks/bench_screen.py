"""Screening benchmark: end-to-end ``ra-sdk screen`` vs the engine + score alone, a kill
and resume test, and peak memory for 1,000 vs 10,000 studies.

    python -m benchmarks.bench_screen [--kill-n 2000] [--mem-small 1000 --mem-large 10000] \
        [--out benchmarks/results/screen_cpu.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, timeit, write_json

SCREEN = [sys.executable, "-m", "ra_sdk.cli", "screen", "--backend", "onnxruntime", "--device", "cpu", "--no-progress"]


def write_studies(folder: Path, n: int, pool: np.ndarray) -> None:
    from ra_sdk.io.write import write_png

    for i in range(n):
        write_png(folder / f"{i // 1000:02d}" / f"s{i:05d}.png", (pool[i % len(pool)] * 255).astype(np.uint8))


def child_screen(studies: str, out: str, batch: int) -> None:
    """Run one screen in this process and print its peak RSS (kB) and images/s."""
    from ra_sdk.run import run
    from ra_sdk.screen import Screener

    s = Screener(None, backend="onnxruntime", device="cpu", batch_size=batch)
    summary, _ = run(studies, out, s, resume=False)
    print(json.dumps({"max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "images_per_s": summary.images_per_s, "studies": summary.studies}))


def rows(path: Path) -> list[tuple[str, str, str]]:
    return [(r["study"], r["score"], r["flagged"]) for r in csv.DictReader(open(path))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kill-n", type=int, default=2000)
    ap.add_argument("--mem-small", type=int, default=1000)
    ap.add_argument("--mem-large", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/results/screen_cpu.json")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_screen(args.child[0], args.child[1], args.batch)
        return
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.journal import JOURNAL, read_journal
    from ra_sdk.run import run
    from ra_sdk.screen import Screener

    res: dict = {"suite": "screen", "machine": machine(), "batch": args.batch}
    pool = normal_batch("test", 200, start=5000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        # 1. Throughput: end-to-end screen vs engine + score on preloaded arrays, one process.
        s = Screener(None, backend="onnxruntime", device="cpu", batch_size=args.batch)
        x = pool[:args.batch * 4]
        eng = timeit(lambda: s.scorer.score(x), warmup=1, repeat=5)
        write_studies(tmp_p / "tp", 512, pool)
        e2e = []
        for rep in range(3):
            summary, _ = run(tmp_p / "tp", tmp_p / f"tp_out{rep}", s, resume=False)
            e2e.append(summary.images_per_s)
        res["throughput"] = {
            "engine_plus_score_images_per_s": len(x) / eng["median_s"], "engine_plus_score": eng,
            "screen_images_per_s_runs": e2e, "screen_images_per_s": float(np.median(e2e)),
        }
        res["throughput"]["ratio"] = res["throughput"]["screen_images_per_s"] / res["throughput"]["engine_plus_score_images_per_s"]
        print(f"throughput: engine+score {res['throughput']['engine_plus_score_images_per_s']:.1f} images/s, "
              f"screen {res['throughput']['screen_images_per_s']:.1f} images/s (runs {[round(v, 1) for v in e2e]}), ratio {res['throughput']['ratio']:.2f}", flush=True)

        # 2. Kill test: an uninterrupted run, then a run SIGKILLed at a random point and resumed.
        kill_dir = tmp_p / "kill"
        write_studies(kill_dir, args.kill_n, pool)
        t = time.perf_counter()
        subprocess.run([*SCREEN, str(kill_dir), "--out", str(tmp_p / "full")], check=True, capture_output=True)
        full_s = time.perf_counter() - t
        rnd = random.Random(time.time_ns())
        kill_after = rnd.uniform(0.1, 0.9) * full_s
        p = subprocess.Popen([*SCREEN, str(kill_dir), "--out", str(tmp_p / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(kill_after)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        done_at_kill = len(read_journal(tmp_p / "killed" / JOURNAL))
        r = subprocess.run([*SCREEN, str(kill_dir), "--out", str(tmp_p / "killed")], capture_output=True, text=True)
        a, b = rows(tmp_p / "full" / "results.csv"), rows(tmp_p / "killed" / "results.csv")
        res["kill"] = {"studies": args.kill_n, "uninterrupted_s": full_s, "killed_after_s": kill_after, "rows_done_at_kill": done_at_kill,
                       "resume_rc": r.returncode, "resume_summary": r.stdout.strip(), "rows_equal": a == b, "rows": len(b)}
        print(f"kill test: killed after {kill_after:.1f} s with {done_at_kill}/{args.kill_n} done; resumed: {r.stdout.strip()}; identical rows: {a == b}", flush=True)

        # 3. Memory: peak RSS for a small and a large folder, each in a fresh process.
        mem = {}
        for n in (args.mem_small, args.mem_large):
            d = tmp_p / f"mem{n}"
            write_studies(d, n, pool)
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_screen", "--batch", str(args.batch), "--child", str(d), str(tmp_p / f"mem{n}_out")], capture_output=True, text=True, check=True)
            mem[n] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"memory: {n} studies -> peak RSS {mem[n]['max_rss_kb'] / 1024:.0f} MB ({mem[n]['images_per_s']:.1f} images/s)", flush=True)
        res["memory"] = {str(k): v for k, v in mem.items()}
        res["memory"]["ratio_large_to_small"] = mem[args.mem_large]["max_rss_kb"] / mem[args.mem_small]["max_rss_kb"]
        print(f"memory ratio {args.mem_large}/{args.mem_small}: {res['memory']['ratio_large_to_small']:.3f}")
    write_json(args.out, res)


if __name__ == "__main__":
    main()
