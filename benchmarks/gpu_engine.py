"""GPU engine check: the torch CUDA runner (CUDA graphs) with the CUDA scoring kernels vs
the CPU path (ONNX Runtime + numpy scoring) on the demo studies, and images/s of the whole
scoring pipeline (engine + score) at batch 1 and 256 in fp32 and fp16.

    python -m benchmarks.gpu_engine --out $OUT/gpu_engine.json [--device cpu (self-check)]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_fidelity import run as fidelity
from benchmarks.common import machine, timeit, write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--checkpoint", default="ra_sdk/data/ra_brain_demo.onnx-bundle", help="checkpoint folder or engine file (default: the bundled engine, which keeps its weights)")
    args = ap.parse_args()
    from ra_sdk.export.onnx_export import export_checkpoint

    from ra_sdk.calibration import calibrate
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.demo_studies import write_demo_studies
    from ra_sdk.engine import read_engine
    from ra_sdk.scorer import Scorer

    res: dict = {"suite": "gpu_engine", "machine": machine()}
    try:
        res["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        res["gpu"] = "none"
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "needs_cuda", "tests/test_export.py", "tests/test_scoring.py"], capture_output=True, text=True)
    res["needs_cuda_tests"] = {"rc": r.returncode, "tail": r.stdout.strip().splitlines()[-6:], "seconds": time.perf_counter() - t}
    print("\n".join(res["needs_cuda_tests"]["tail"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(tmp) / "demo"
        write_demo_studies(studies)
        bundle = Path(tmp) / "e.onnx-bundle"
        export_checkpoint(args.checkpoint, bundle, score=read_engine(DEMO_ENGINE).meta.score, fp16=True, include_weights=True)
        calibrate(bundle, "embedded", n=256, backend="onnxruntime", device="cpu")
        cpu = {"backend": "onnxruntime", "device": "cpu"}
        gpu = {"backend": "torch", "device": args.device}
        fid = fidelity(bundle, studies, [
            ("torch cuda fp32 + kernels vs cpu path", cpu, gpu),
            ("torch cuda fp16 + kernels vs cpu path", cpu, {**gpu, "precision": "fp16"}),
        ])
        res["parity"] = fid["comparisons"]
        eng = read_engine(bundle)
        images = np.random.default_rng(0).random((256, 128, 128), dtype=np.float32)
        from ra_sdk.data.augment import normal_batch

        images[:64] = normal_batch("test", 64)
        res["throughput"] = {}
        sync = None
        if args.device == "cuda":
            import cupy

            sync = cupy.cuda.Device().synchronize
        for prec in ("fp32", "fp16"):
            with Scorer(eng, **gpu, precision=prec, batch_size=256) as sc:
                for b in (1, 64, 256):
                    x = images[:b]
                    if args.device == "cuda":
                        x = cupy.asarray(x)
                    tm = timeit(lambda: sc.score_batch(x), warmup=3, repeat=20 if b == 1 else 10, sync=sync)
                    res["throughput"][f"gpu_{prec}_b{b}"] = {**tm, "images_per_s": b / tm["median_s"], "latency_ms": tm["median_s"] * 1e3}
                    print(f"gpu {prec} batch {b}: {b / tm['median_s']:.1f} images/s, p50 {tm['median_s'] * 1e3:.2f} ms", flush=True)
        with Scorer(eng, **cpu, batch_size=256) as sc:
            for b in (1, 256):
                tm = timeit(lambda: sc.score_batch(images[:b]), warmup=1, repeat=10 if b == 1 else 3)
                res["throughput"][f"cpu_path_b{b}"] = {**tm, "images_per_s": b / tm["median_s"], "latency_ms": tm["median_s"] * 1e3}
                print(f"cpu path (host) batch {b}: {b / tm['median_s']:.1f} images/s", flush=True)
    write_json(args.out, res)
    print("\n=== gpu engine:", res["gpu"])
    for k, v in res["parity"].items():
        print(f"{k:<40} spearman {v['spearman']:.6f} flags identical {v['flags_identical']} AUROC {v['auroc_reference']:.4f} -> {v['auroc_test']:.4f}")
    for k, v in res["throughput"].items():
        print(f"{k:<18} {v['images_per_s']:>10.1f} images/s  p50 {v['latency_ms']:.2f} ms")


if __name__ == "__main__":
    main()
