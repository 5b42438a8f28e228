"""The standard speed suite (``ra-sdk bench``) with the engine of the bundled model plus
its FP16 networks and PyTorch weights, so every runner and precision usable here is timed.

    python -m benchmarks.bench_speed [--out benchmarks/results/speed_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="ra_sdk/data/ra_brain_demo.onnx-bundle", help="checkpoint folder or engine file (default: the bundled engine, which keeps its weights)")
    ap.add_argument("--out", default="benchmarks/results/speed_cpu.json")
    args = ap.parse_args()
    from ra_sdk.export.onnx_export import export_checkpoint

    from ra_sdk.bench import format_suite, run_suite
    from ra_sdk.calibration import calibrate
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.engine import read_engine

    score = read_engine(DEMO_ENGINE).meta.score
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "all.onnx-bundle"
        export_checkpoint(args.checkpoint, bundle, score=score, fp16=True, include_weights=True, int8=True)
        calibrate(bundle, "embedded", n=256, backend="onnxruntime", device="cpu")
        res = run_suite(engine=bundle)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(format_suite(res))


if __name__ == "__main__":
    main()
