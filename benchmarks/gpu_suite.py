"""GPU suite: needs_cuda tests, kernel parity on random and MNI images, kernel timings.

    python -m benchmarks.gpu_suite --out benchmarks/results/gpu_<card>.json

One run, well under 9 minutes on an H100/H200. Parity is checked against the CPU path
(which itself equals scikit-image/scipy: tests/test_scoring.py). Runs on a machine
without a GPU too, then doing only the CPU parts (to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import machine, timeit, write_json


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "none"


def run_tests() -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_scoring.py"], capture_output=True, text=True)
    tail = r.stdout.strip().splitlines()[-12:]
    print("\n".join(tail), flush=True)
    return {"returncode": r.returncode, "summary": tail[-1] if tail else "", "tail": tail, "seconds": time.perf_counter() - t}


def clahe_diff(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.float64) - b)
    return {"max_abs": float(d.max()), "frac_gt_1e-4": float((d > 1e-4).mean()), "pass": bool(d.max() <= 3e-4 and (d <= 1e-4).mean() >= 0.999)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "benchmarks/results"), "gpu_suite.json"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats and sizes (CPU self-check)")
    args = ap.parse_args()

    from ra_sdk import scoring
    from ra_sdk.data import load_normal_slices

    res: dict = {"suite": "gpu", "gpu": gpu_name(), "machine": machine(), "parity": {}, "timings": {}}
    try:
        import cupy as cp

        cp.cuda.runtime.getDeviceCount()
        have_gpu = True
    except Exception as err:
        print(f"no GPU ({type(err).__name__}: {err}); CPU parts only", flush=True)
        have_gpu = False
    res["tests"] = run_tests()

    rng = np.random.default_rng(0)
    mni = load_normal_slices(128)
    mni512 = load_normal_slices(512)[::8]
    cases = {
        "random_128": rng.random((64, 128, 128), dtype=np.float32),
        "mni_128": mni,
        "random_512": rng.random((8, 512, 512), dtype=np.float32),
        "mni_512": mni512,
        "odd_127x201": rng.random((8, 127, 201), dtype=np.float32),
        "uint16_128": rng.integers(0, 65536, (16, 128, 128)).astype(np.uint16),
    }
    x = mni[:64]
    x_ph = np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)
    x_ph[:, 50:70, 40:70] *= 0.5
    ref_map, ref_scores = scoring.score_batch(x, x_ph)

    if have_gpu:
        sync = cp.cuda.Device().synchronize
        for name, arr in cases.items():
            res["parity"][f"clahe_{name}"] = clahe_diff(cp.asnumpy(scoring.clahe(cp.asarray(arr))), scoring.clahe(arr))
        gmap, gscores = scoring.score_batch(cp.asarray(x), cp.asarray(x_ph))
        gmap = cp.asnumpy(gmap)
        res["parity"]["score_map_mni_128"] = {
            "max_abs_rel_to_max": float(np.abs(gmap - ref_map).max() / ref_map.max()),
            "pass": bool(np.abs(gmap - ref_map).max() <= 1e-5 * ref_map.max()),
        }
        rel = np.abs(cp.asnumpy(gscores) - ref_scores) / np.abs(ref_scores)
        res["parity"]["image_scores_mni_128"] = {"max_rel": float(rel.max()), "pass": bool(rel.max() <= 1e-5)}

    # Timings: images/s of CLAHE and of the whole score, GPU kernels vs the CPU path.
    sizes = [128] if args.quick else [128, 512]
    batches = [1, 64] if args.quick else [1, 64, 1024]
    for size in sizes:
        pool = mni if size == 128 else load_normal_slices(512)
        for b in batches:
            xb = pool[np.arange(b) % len(pool)]
            key = f"clahe_{size}_b{b}"
            row = {}
            if have_gpu:
                xg = cp.asarray(xb)
                t = timeit(lambda: scoring.clahe(xg), warmup=3, repeat=20 if b < 1024 else 10, sync=sync)
                row["gpu"] = {**t, "images_per_s": b / t["median_s"]}
            cpu_rep = 5 if b * size * size <= 64 * 128 * 128 else 2
            t = timeit(lambda: scoring.clahe(xb), warmup=1, repeat=cpu_rep)
            row["cpu_path"] = {**t, "images_per_s": b / t["median_s"]}
            res["timings"][key] = row
            print(key, {k: round(v["images_per_s"], 1) for k, v in row.items()}, flush=True)
        from skimage.exposure import equalize_adapthist

        xs = pool[:8]
        t = timeit(lambda: [equalize_adapthist(im) for im in xs], warmup=1, repeat=3)
        res["timings"][f"clahe_{size}_skimage_loop"] = {"cpu": {**t, "images_per_s": 8 / t["median_s"]}}
    for b in ([1, 64] if args.quick else [1, 64, 256]):
        xb, pb = x[np.arange(b) % 64], x_ph[np.arange(b) % 64]
        row = {}
        if have_gpu:
            xg, pg = cp.asarray(xb), cp.asarray(pb)
            t = timeit(lambda: scoring.score_batch(xg, pg), warmup=3, repeat=20, sync=sync)
            row["gpu"] = {**t, "images_per_s": b / t["median_s"]}
        t = timeit(lambda: scoring.score_batch(xb, pb), warmup=1, repeat=3 if b > 64 else 5)
        row["cpu_path"] = {**t, "images_per_s": b / t["median_s"]}
        res["timings"][f"score_128_b{b}"] = row
        print(f"score_128_b{b}", {k: round(v["images_per_s"], 1) for k, v in row.items()}, flush=True)

    write_json(args.out, res)
    print("\n=== GPU suite:", res["gpu"], "| tests:", res["tests"]["summary"])
    for k, v in res["parity"].items():
        print(f"parity {k:<26} {'PASS' if v['pass'] else 'FAIL'}  {json.dumps({a: b for a, b in v.items() if a != 'pass'})}")
    print(f"{'timing':<24}{'GPU img/s':>12}{'CPU path img/s':>16}{'ratio':>8}")
    for k, v in res["timings"].items():
        g = v.get("gpu", {}).get("images_per_s")
        c = v.get("cpu_path", v.get("cpu", {})).get("images_per_s")
        print(f"{k:<24}{(f'{g:,.0f}' if g else '-'):>12}{c:>16,.1f}{(f'{g / c:.0f}x' if g else '-'):>8}")


if __name__ == "__main__":
    main()
