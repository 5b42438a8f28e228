"""CPU scoring benchmark: ra-sdk's batched CLAHE vs the scikit-image per-image loop vs
OpenCV's CLAHE (different semantics: a speed reference only), and the full CPU score.

    python -m benchmarks.bench_scoring_cpu [--batch 64] [--size 128] [--out benchmarks/results/scoring_cpu.json]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import machine, timeit, write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/scoring_cpu.json")
    args = ap.parse_args()

    import cv2
    from skimage.exposure import equalize_adapthist

    from ra_sdk import scoring
    from ra_sdk.data import load_normal_slices

    slices = load_normal_slices(size=args.size)
    idx = np.linspace(0, len(slices) - 1, args.batch).astype(int)
    x = slices[idx]
    rng = np.random.default_rng(0)
    x_ph = np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)
    b = args.batch

    ocv = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    x8 = (x * 255).astype(np.uint8)
    rows = {
        "clahe_ra_sdk": timeit(lambda: scoring.clahe(x), repeat=args.repeat),
        "clahe_skimage_loop": timeit(lambda: [equalize_adapthist(im) for im in x], repeat=max(3, args.repeat // 2)),
        "clahe_opencv_loop": timeit(lambda: [ocv.apply(im) for im in x8], repeat=args.repeat),
        "score_ra_sdk": timeit(lambda: scoring.score_batch(x, x_ph), repeat=args.repeat),
    }
    per_image = {k: v["median_s"] / b * 1e3 for k, v in rows.items()}
    result = {
        "suite": "scoring_cpu",
        "machine": machine(),
        "params": {"batch": b, "size": args.size, "images": "MNI ICBM152 slices (embedded)"},
        "timings": rows,
        "ms_per_image": per_image,
        "speedup_clahe_vs_skimage": rows["clahe_skimage_loop"]["median_s"] / rows["clahe_ra_sdk"]["median_s"],
    }
    write_json(args.out, result)
    print(f"{'step':<22}{'ms/image':>10}{'p10..p90 (ms/batch)':>26}")
    for k, v in rows.items():
        print(f"{k:<22}{per_image[k]:>10.3f}{v['p10_s'] * 1e3:>14.1f} .. {v['p90_s'] * 1e3:.1f}")
    print(f"CLAHE speed-up vs scikit-image loop: {result['speedup_clahe_vs_skimage']:.2f}x")


if __name__ == "__main__":
    main()
