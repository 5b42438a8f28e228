"""Training throughput: images/s of one RA, AE and VAE step per model and batch size,
reference step vs the fast step (and the CUDA-graph step on a GPU), with the step's
FLOPs (torch's FlopCounterMode: convolutions and matmuls) and achieved TFLOP/s against the
card's peak. Method: warm-up steps, then the median of timed repeats, the device
synchronised inside the timed region.

    python -m benchmarks.bench_train [--models ra-tiny,ra-small,ra-base] [--batches 64,256]
        [--objectives ra,ae,vae] [--out benchmarks/results/train_<card>.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

#: dense peak TFLOP/s by card (NVIDIA data sheets, SXM parts): bf16 tensor cores, fp32
PEAKS = {"H200": {"bf16": 989.0, "fp32": 67.0}, "H100": {"bf16": 989.0, "fp32": 67.0}, "A100": {"bf16": 312.0, "fp32": 19.5}}


def peak_of(device_name: str) -> dict[str, float] | None:
    return next((v for k, v in PEAKS.items() if k in device_name), None)


def step_flops(tr: Any, x: Any) -> float:
    """FLOPs of one training step (forward and backward convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        tr.train_step(x)
    return float(counter.get_total_flops())


def time_steps(model: str, objective: str, batch: int, step: str, device: str, *, warmup: int, repeat: int) -> dict[str, Any]:
    import torch
    from ra_sdk.train.config import TrainConfig
    from ra_sdk.train.data import make_pool
    from ra_sdk.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(objective=objective, model=model, batch_size=batch, lr=1e-4, step=step, augment=False)
        tr = Trainer(cfg, Path(tmp), device=device)
        pool = torch.as_tensor(make_pool("train", batch, seed=0, size=tr.model_cfg.image_size)).to(tr.device)
        if tr.cuda and cfg.channels_last:
            pool = pool.contiguous(memory_format=torch.channels_last)

        def one() -> None:
            if tr.fast is not None:
                tr.fast(pool)  # the loop reads the losses every log_every steps, not here
            else:
                tr.train_step(pool)

        def sync() -> None:
            if tr.cuda:
                torch.cuda.synchronize()

        for _ in range(warmup):
            one()
        sync()
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            one()
            sync()
            times.append(time.perf_counter() - t)
        times.sort()
        med = times[len(times) // 2]
        flops = step_flops(tr, pool) if step == "reference" else None
    return {"median_s": med, "p10_s": times[len(times) // 10], "p90_s": times[(9 * len(times)) // 10], "images_per_s": batch / med, "step_flops": flops}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="ra-tiny,ra-small,ra-base")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--objectives", default="ra,ae,vae")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="ra-tiny, batch 8, a few steps (checks the script on a CPU)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    card = torch.cuda.get_device_name() if cuda else "cpu"
    models = ["ra-tiny"] if args.quick else args.models.split(",")
    batches = [8] if args.quick else [int(b) for b in args.batches.split(",")]
    steps = ["reference", "fast"] + (["graph"] if cuda else [])
    warmup, repeat = (1, 3) if args.quick else (5, 20)
    res: dict[str, Any] = {"suite": "train", "card": card, "torch": torch.__version__, "peaks_tflops": peak_of(card), "rows": []}
    for model in models:
        for objective in args.objectives.split(","):
            for batch in batches:
                flops = None
                for step in steps:
                    try:
                        row = time_steps(model, objective, batch, step, device, warmup=warmup, repeat=repeat)
                    except RuntimeError as err:  # out of memory at a large batch: a row that says so
                        row = {"error": " ".join(str(err).split())[:200]}
                    flops = row.get("step_flops") or flops
                    if flops and "images_per_s" in row:
                        row["tflops_per_s"] = flops * row["images_per_s"] / batch / 1e12
                    res["rows"].append({"model": model, "objective": objective, "batch": batch, "step": step, **row})
                    print(json.dumps(res["rows"][-1]), flush=True)
    for r in res["rows"]:  # speed-ups against the reference step of the same row
        ref = next((q for q in res["rows"] if q["model"] == r["model"] and q["objective"] == r["objective"] and q["batch"] == r["batch"] and q["step"] == "reference"), None)
        if ref and "images_per_s" in r and "images_per_s" in ref:
            r["speedup_vs_reference"] = r["images_per_s"] / ref["images_per_s"]
    out = Path(args.out or f"benchmarks/results/train_{card.split()[-1].lower() if cuda else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
