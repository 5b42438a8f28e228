"""Which score for the current model: perceptual map, image aggregation and a foreground
mask compared on the *validation* split (synthetic anomalies made from validation
normals; never the test split), with the product's scoring functions.

    python -m benchmarks.bench_score_ablation [--engine ENGINE] [--normals 120 --per-type 24]
        [--out benchmarks/results/score_ablation_val.json]

Needs the train extra (torch, onnx): the engine's own weights rebuild the network.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def configs() -> dict[str, object]:
    from ra_sdk.scoring import ScoreConfig

    out: dict[str, object] = {}
    for perceptual in ("features", "structural", "none"):
        for agg, topk in (("mean", 0.01), ("topk", 0.01), ("topk", 0.05), ("max", 0.01)):
            for fg in (0.0, 0.05):
                name = f"{perceptual}/{agg}{'' if agg != 'topk' else f' {topk:.0%}'}" + (f"/fg>{fg:g}" if fg else "")
                out[name] = ScoreConfig(perceptual=perceptual, aggregation=agg, topk=topk, foreground=fg)
    for topk in (0.02, 0.05, 0.1):  # around the best of the grid above
        for fg in (0.02, 0.05, 0.1):
            out[f"features/topk {topk:.0%}/fg>{fg:g}"] = ScoreConfig(perceptual="features", aggregation="topk", topk=topk, foreground=fg)
    out["structural gaussian/mean"] = ScoreConfig(perceptual="structural", ssim_gaussian=True)
    out["features/topk 1%/no CLAHE"] = ScoreConfig(perceptual="features", aggregation="topk", use_clahe=False)
    return out


def main() -> None:

    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.engine import read_engine
    from ra_sdk.evaluation import evaluate, reconstruct_suite, summarise, synthetic_suite
    from ra_sdk.network import load_engine_network, numpy_functions

    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default=str(DEMO_ENGINE))
    ap.add_argument("--normals", type=int, default=120)
    ap.add_argument("--per-type", type=int, default=24)
    ap.add_argument("--out", default="benchmarks/results/score_ablation_val.json")
    ap.add_argument("--split", default="val", choices=["val", "test"], help="val chooses; test only reports (never choose on it)")
    ap.add_argument("--only", default="", help="comma-separated config names (default: all)")
    args = ap.parse_args()
    eng = read_engine(args.engine)
    net = load_engine_network(eng)
    suite = synthetic_suite(args.normals, args.per_type, split=args.split)

    recon, feats = numpy_functions(net)

    t = time.perf_counter()
    rec = reconstruct_suite(recon, suite)
    rows = {}
    chosen = {k: v for k, v in configs().items() if not args.only or k in args.only.split(",")}
    for name, cfg in chosen.items():
        res = evaluate(suite, rec, cfg, feats=feats)
        rows[name] = {"config": cfg.to_dict(), "summary": summarise(res), "types": {k: v["auroc"] for k, v in res.items()}}  # type: ignore[attr-defined]
        s = rows[name]["summary"]
        print(f"{name:<32} mean AUROC {s['mean_auroc']:.3f}  local {s['local_auroc']:.3f}  global {s['global_auroc']:.3f}  detection {s['local_detection_rate']:.3f}", flush=True)
    best = max(rows, key=lambda k: rows[k]["summary"]["mean_auroc"])
    shipped = eng.meta.score.to_dict()
    current = next((k for k, v in rows.items() if all(v["config"].get(f) == shipped.get(f) for f in ("perceptual", "aggregation", "topk", "use_clahe", "ssim_gaussian", "foreground"))), None)
    res = {
        "suite": f"score ablation ({args.split} split)", "engine": Path(args.engine).name, "normals": args.normals, "per_type": args.per_type,
        "seconds": time.perf_counter() - t, "best": best, "shipped": current, "rows": rows,
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"best on the {args.split} split: {best} (mean AUROC {rows[best]['summary']['mean_auroc']:.3f}); shipped now: {current}; wrote {args.out}")


if __name__ == "__main__":
    main()
