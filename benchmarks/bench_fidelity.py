"""Backend and precision fidelity on the demo studies: every study scored by the
ONNX Runtime pipeline (fp32, fp16) and the PyTorch pipeline, compared side by side.

    python -m benchmarks.bench_fidelity [--studies DIR] [--out benchmarks/results/fidelity_cpu.json]

Reports Spearman rank correlation of study scores, flag agreement at the engine's
calibrated threshold, AUROC (normal vs any pathology) of each, and the largest map difference.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine, write_json


def run(bundle: Path, studies: Path, pairs: list[tuple[str, dict, dict]], out: Path | None = None, extra: dict | None = None) -> dict:
    from ra_sdk import metrics
    from ra_sdk.engine import read_engine
    from ra_sdk.evaluation import load_labelled_studies, study_scores
    from ra_sdk.scorer import Scorer

    eng = read_engine(bundle)
    images, owner, rows = load_labelled_studies(studies, eng.meta.preset)
    y = np.array([r["type"] != "normal" for r in rows])
    thr = eng.meta.calibration.threshold if eng.meta.calibration else float("inf")
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def scored(label: str, kw: dict) -> tuple[np.ndarray, np.ndarray]:
        if label not in cache:
            with Scorer(eng, **kw) as sc:
                maps, s, _ = sc.score(images)
            cache[label] = (maps, study_scores(s, owner, len(rows), eng.meta.score))
        return cache[label]

    res: dict = {"suite": "fidelity", "machine": machine(), "studies": len(rows), "images": len(images), "threshold": thr, "comparisons": {}, **(extra or {})}
    for name, ref_kw, test_kw in pairs:
        m_ref, s_ref = scored(str(ref_kw), ref_kw)
        m_test, s_test = scored(str(test_kw), test_kw)
        row = {
            "reference": ref_kw, "test": test_kw,
            "spearman": metrics.spearman(s_ref, s_test),
            "flags_identical": bool(np.array_equal(s_ref > thr, s_test > thr)),
            "flag_disagreements": int(np.sum((s_ref > thr) != (s_test > thr))),
            "auroc_reference": metrics.auroc(s_ref, y), "auroc_test": metrics.auroc(s_test, y),
            "max_map_diff": float(np.abs(m_ref - m_test).max()), "map_max": float(m_ref.max()),
            "max_score_rel_diff": float(np.max(np.abs(s_ref - s_test) / np.maximum(np.abs(s_ref), 1e-12))),
        }
        row["auroc_change"] = row["auroc_test"] - row["auroc_reference"]
        res["comparisons"][name] = row
        print(f"{name:<34} spearman {row['spearman']:.6f}  flags identical {row['flags_identical']} ({row['flag_disagreements']} differ)  "
              f"AUROC {row['auroc_reference']:.4f} -> {row['auroc_test']:.4f}  max map diff {row['max_map_diff']:.3g} (map max {row['map_max']:.3g})", flush=True)
    if out:
        write_json(out, res)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", default=None, help="demo-studies folder (written to a temporary folder when omitted)")
    ap.add_argument("--checkpoint", default="ra_sdk/data/ra_brain_demo.onnx-bundle", help="checkpoint folder or engine file (default: the bundled engine, which keeps its weights)")
    ap.add_argument("--out", default="benchmarks/results/fidelity_cpu.json")
    args = ap.parse_args()
    from ra_sdk.export.onnx_export import export_checkpoint

    from ra_sdk.calibration import calibrate
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.demo_studies import write_demo_studies
    from ra_sdk.engine import read_engine

    with tempfile.TemporaryDirectory() as tmp:
        studies = Path(args.studies) if args.studies else Path(tmp) / "demo"
        if not args.studies:
            write_demo_studies(studies)
        bundle = Path(tmp) / "fid.onnx-bundle"
        export_checkpoint(args.checkpoint, bundle, score=read_engine(DEMO_ENGINE).meta.score, fp16=True, include_weights=True, int8=True)  # the shipped score
        calibrate(bundle, "embedded", n=256, backend="onnxruntime", device="cpu")
        cpu = {"backend": "onnxruntime", "device": "cpu", "precision": "fp32"}
        res = run(bundle, studies, [
            ("onnxruntime fp32 vs torch fp32", {"backend": "torch", "device": "cpu"}, cpu),
            ("onnxruntime fp16 vs fp32", cpu, {**cpu, "precision": "fp16"}),
            ("onnxruntime int8 vs fp32", cpu, {**cpu, "precision": "int8"}),
        ])
        res["accuracy_suite_int8"] = suite_fidelity(bundle)
        print("accuracy suite, int8 vs fp32:", res["accuracy_suite_int8"])
        write_json(Path(args.out), res)


def suite_fidelity(bundle: Path) -> dict:
    """int8 against fp32 image scores on the synthetic test suite (120 normals, 24 per
    type): Spearman, flags identical at the engine's calibrated threshold, AUROC change."""
    from ra_sdk.export.quantize import fidelity

    from ra_sdk.engine import read_engine
    from ra_sdk.evaluation import synthetic_suite

    eng = read_engine(bundle)
    suite = synthetic_suite(120, 24)
    images = np.concatenate([suite.normals, *[imgs for imgs, _ in suite.sets.values()]])
    y = np.r_[np.zeros(len(suite.normals), bool), np.ones(len(images) - len(suite.normals), bool)]
    return fidelity(eng, images, y, threshold=eng.meta.calibration.threshold if eng.meta.calibration else None)


if __name__ == "__main__":
    main()
