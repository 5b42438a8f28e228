"""How the INT8 networks are made, by measurement: the calibration method, then which
layers stay float (per-layer sensitivity), judged on the validation split by the product's
scores (never the test split), with the speed of each choice.

    python -m benchmarks.bench_int8 [--out benchmarks/results/int8_choice_cpu.json] [--quick]

Sensitivity of a layer = how much the image scores move back toward fp32 when only that
layer is left in float (all others int8): the relative RMS of int8 - fp32 scores, full
int8 minus leave-one-out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from ra_sdk.export.quantize import METHODS, add_int8, fidelity, quantizable_layers

    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.engine import read_engine
    from ra_sdk.evaluation import synthetic_suite
    from ra_sdk.scorer import Scorer

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/int8_choice_cpu.json")
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    eng = read_engine(DEMO_ENGINE)
    calib = normal_batch("val", 64 if args.quick else args.calib_images)[:, None]
    suite = synthetic_suite(16 if args.quick else 96, 2 if args.quick else 12, split="val", seed=5)
    probe = np.concatenate([suite.normals, *[imgs for imgs, _ in suite.sets.values()]])
    anomalous = np.r_[np.zeros(len(suite.normals), bool), np.ones(len(probe) - len(suite.normals), bool)]
    x32 = normal_batch("test", 32, start=9000)

    def speed(e, precision):
        with Scorer(e, backend="onnxruntime", device="cpu", precision=precision) as sc:
            sc.score_batch(x32)
            ts = []
            for _ in range(3 if args.quick else 7):
                t = time.perf_counter()
                sc.score_batch(x32)
                ts.append(time.perf_counter() - t)
        return 32 / float(np.median(ts))

    res: dict = {"engine": DEMO_ENGINE.name, "calib": f"embedded validation split, {len(calib)} images", "probe": f"{len(probe)} validation images ({len(suite.normals)} normals)", "methods": {}}
    fp32_ips = speed(eng, "fp32")
    for method in ("minmax",) if args.quick else METHODS:
        e8 = add_int8(eng, calib, method=method)
        f = fidelity(e8, probe, anomalous)
        f["images_per_s"], f["fp32_images_per_s"] = speed(e8, "int8"), fp32_ips
        res["methods"][method] = f
        print(method, json.dumps(f), flush=True)
    best = max(res["methods"], key=lambda m: res["methods"][m]["spearman"])
    res["method"] = best

    # which networks: full int8, or one network int8 and the other fp32
    for nets in (("recon",), ("features",)):
        e8 = add_int8(eng, calib, method=best, networks=nets)
        f = fidelity(e8, probe, anomalous)
        f["images_per_s"] = speed(e8, "int8")
        res.setdefault("networks", {})["+".join(nets)] = f
        print("int8 only", nets, json.dumps(f), flush=True)

    def rel_rms(e) -> float:
        out = {}
        for p in ("fp32", "int8"):
            with Scorer(e, backend="onnxruntime", device="cpu", precision=p) as sc:
                out[p] = sc.score(probe, maps=False, recons=False)[1]
        return float(np.sqrt(np.mean((out["int8"] - out["fp32"]) ** 2)) / np.sqrt(np.mean(out["fp32"] ** 2)))

    # per-layer sensitivity of the recon network (the sensitive one): leave one layer float
    layers = quantizable_layers(eng.network("recon")[1])
    full = rel_rms(add_int8(eng, calib, method=best, networks=("recon",)))
    sens = []
    for name in layers[: 4 if args.quick else None]:
        err = rel_rms(add_int8(eng, calib, method=best, networks=("recon",), float_layers=[name]))
        sens.append({"layer": name, "score_rel_rms_if_float": err, "gain": full - err})
        print(f"{name:<60} {err:.5f} (gain {full - err:+.5f})", flush=True)
    sens.sort(key=lambda r: -r["gain"])
    res["sensitivity"] = {"network": "recon", "score_rel_rms_all_int8": full, "layers": sens}
    passing = [k for k, v in res["networks"].items() if v["passed"]] + (["recon+features"] if res["methods"][best]["passed"] else [])
    res["choice"] = {"method": best, "int8_networks": max(passing, key=lambda k: res["networks"].get(k, res["methods"][best])["images_per_s"]) if passing else None}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"choice {res['choice']}; wrote {args.out}")


if __name__ == "__main__":
    main()
