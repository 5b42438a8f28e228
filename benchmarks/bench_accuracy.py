"""Accuracy suite: RA vs AE vs VAE on the synthetic pathology suite, and the ablation of
each part of the score (perceptual option, CLAHE, perceptual term, aggregation).

    python -m benchmarks.bench_accuracy --ckpt ra=ra_sdk/data/ra_brain_demo.onnx-bundle --ckpt ae=PATH --ckpt vae=PATH \
        [--n-normal 120 --n-per-type 24] --out benchmarks/results/accuracy.json

Needs the ``train`` extra (torch) to run the checkpoints; scoring is the CPU path.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import machine, write_json

ABLATIONS = {
    "structural/mean": {},
    "structural/topk1%": {"aggregation": "topk"},
    "structural/max": {"aggregation": "max"},
    "features/mean": {"perceptual": "features"},
    "features/topk1%": {"perceptual": "features", "aggregation": "topk"},
    "no-clahe (structural)": {"use_clahe": False},
    "no-perceptual (clahe residual)": {"perceptual": "none"},
    "residual only": {"perceptual": "none", "use_clahe": False},
}


def main() -> None:
    from ra_sdk.train import load_model

    from ra_sdk.evaluation import evaluate, reconstruct_suite, summarise, synthetic_suite
    from ra_sdk.network import numpy_functions
    from ra_sdk.scoring import ScoreConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", action="append", required=True, help="name=checkpoint folder")
    ap.add_argument("--n-normal", type=int, default=120)
    ap.add_argument("--n-per-type", type=int, default=24)
    ap.add_argument("--out", default="benchmarks/results/accuracy.json")
    ap.add_argument("--lpips", nargs=2, metavar=("BACKBONE", "HEADS"), help="local LPIPS SqueezeNet-1.1 weights: adds the LPIPS perceptual option")
    args = ap.parse_args()
    suite = synthetic_suite(args.n_normal, args.n_per_type)
    result: dict = {"suite": "accuracy", "machine": machine(), "params": {"n_normal": args.n_normal, "n_per_type": args.n_per_type}, "models": {}}
    for spec in args.ckpt:
        name, path = spec.split("=", 1)
        net, cfg = load_model(path)

        recon, feats = numpy_functions(net)

        t = time.perf_counter()
        rec = reconstruct_suite(recon, suite)
        entry = {"checkpoint": path, "train": cfg.get("train", {}), "progress": cfg.get("progress", {}), "normal_mse": float(((rec["normal"] - suite.normals) ** 2).mean()), "scores": {}}
        for label, kw in ABLATIONS.items():
            res = evaluate(suite, rec, ScoreConfig(**kw), feats=feats)
            entry["scores"][label] = {"per_type": res, "summary": summarise(res)}
            print(f"{name:<4} {label:<32} " + " ".join(f"{k}={v:.3f}" for k, v in summarise(res).items()), flush=True)
        if args.lpips:
            from ra_sdk.train.lpips import load_lpips

            lp, weights = load_lpips(*args.lpips)
            for label, kw in (("lpips/mean", {"perceptual": "features"}), ("lpips/topk1%", {"perceptual": "features", "aggregation": "topk"})):
                res = evaluate(suite, rec, ScoreConfig(**kw), feats=lp.features_fn(), feature_weights=weights)
                entry["scores"][label] = {"per_type": res, "summary": summarise(res)}
                print(f"{name:<4} {label:<32} " + " ".join(f"{k}={v:.3f}" for k, v in summarise(res).items()), flush=True)
        entry["seconds"] = time.perf_counter() - t
        result["models"][name] = entry
    write_json(args.out, result)


if __name__ == "__main__":
    main()
