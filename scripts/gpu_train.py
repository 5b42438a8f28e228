"""Train the bundled demo model and its baselines on a lent GPU, in one run.

    python scripts/gpu_train.py --out OUTDIR [--ra-minutes 4] [--quick]

1. times ra-base at batch 32 (images/s, bf16 AMP on and off) on a 2048-image pool;
2. makes the augmented normal pools (train, val) from the embedded template;
3. trains RA (ra-tiny) for --ra-minutes, then the AE and VAE baselines (same backbone,
   same number of steps and images) side by side;
4. writes OUTDIR/{ra,ae,vae}.tar (best checkpoint + logs) and OUTDIR/train_summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def time_ra_base(pool, amp: bool, steps: int) -> float:
    import torch
    from ra_sdk.train import TrainConfig, Trainer

    tr = Trainer(TrainConfig(model="ra-base", batch_size=32, amp=amp, augment=True), Path("/tmp/ra_base_timing"))
    x = torch.as_tensor(pool[:32]).to(tr.device)
    for _ in range(3):
        tr.train_step(x)
    torch.cuda.synchronize() if tr.cuda else None
    t = time.perf_counter()
    for i in range(steps):
        tr.train_step(torch.as_tensor(pool[(i * 32) % len(pool):][:32]).to(tr.device))
    torch.cuda.synchronize() if tr.cuda else None
    return steps * 32 / (time.perf_counter() - t)


def main() -> None:
    import torch
    from ra_sdk.train import TrainConfig, Trainer, make_pool

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ra-minutes", type=float, default=4.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pool", type=int, default=16384)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script on a CPU")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path("/tmp/ra_runs")
    summary: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "args": vars(args)}

    t = time.perf_counter()
    n_pool = 64 if args.quick else args.pool
    train = make_pool("train", n_pool, seed=0, size=128, workers=args.workers)
    val = make_pool("val", 32 if args.quick else 512, seed=0, size=128, workers=args.workers)
    summary["pool_seconds"] = time.perf_counter() - t
    print(f"pools: train {train.shape}, val {val.shape} in {summary['pool_seconds']:.1f}s", flush=True)

    steps = 2 if args.quick else 64
    summary["ra_base_images_per_s"] = {"amp_bf16": time_ra_base(train, True, steps), "fp32": time_ra_base(train, False, steps)}
    print("ra-base batch 32 images/s:", summary["ra_base_images_per_s"], flush=True)

    common = dict(model="ra-tiny", batch_size=8 if args.quick else args.batch, lr=args.lr, epochs=10_000, patience=0, pool_size=n_pool, checkpoint_every=500)
    ra = Trainer(TrainConfig(objective="ra", max_minutes=0.1 if args.quick else args.ra_minutes, **common), runs / "ra")
    summary["ra"] = ra.fit(train, val, resume=False)
    print("ra:", summary["ra"], flush=True)
    n_steps = summary["ra"]["steps"]

    results = {}

    def baseline(obj: str) -> None:
        tr = Trainer(TrainConfig(objective=obj, max_steps=n_steps, **common), runs / obj)
        results[obj] = tr.fit(train, val, resume=False)

    threads = [threading.Thread(target=baseline, args=(o,)) for o in ("ae", "vae")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    summary.update(results)
    print("baselines:", results, flush=True)

    for obj in ("ra", "ae", "vae"):
        with tarfile.open(out / f"{obj}.tar", "w") as tf:
            for name in ("best/model.safetensors", "best/config.json", "log.csv", "epochs.jsonl"):
                p = runs / obj / name
                if p.exists():
                    tf.add(p, arcname=f"{obj}/{name}")
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "args"}, indent=1))


if __name__ == "__main__":
    main()
