"""``ra-sdk demo``: write the demo studies, screen them with the bundled engine, and print
per-pathology AUROC and detection rate with the throughput. Core install only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .screen import Screener, StudyResult, run


def _mask(root: Path, row: dict[str, str], r: StudyResult) -> tuple[np.ndarray, np.ndarray] | None:
    """(anomaly map, mask) of the labelled slice, or None when it was not screened."""
    from .io import read_nifti, read_raster

    if not row["mask"] or r.maps is None or r.slices is None:
        return None
    path = root / row["mask"]
    if path.name.endswith(".nii.gz"):
        k = int(row["slice"])
        where = np.nonzero(r.slices == k)[0]
        if not where.size:
            return None
        return r.maps[where[0]], read_nifti(path).pixels[k] > 0
    return r.maps[0], read_raster(path).pixels[0] > 0


def run_demo(out: str | Path, *, n_normal: int = 60, n_per_type: int = 12, seed: int = 0, backend: str = "auto", device: str = "auto", batch_size: int = 32, workers: int = 2, progress: bool | None = None) -> dict[str, Any]:
    from .data.demo import DemoSpec, read_labels, write_demo_studies
    from .data.pathology import LOCAL, TYPES

    out = Path(out)
    labels_path = write_demo_studies(out, DemoSpec(n_normal=n_normal, n_per_type=n_per_type, seed=seed))
    labels = {r["study"]: r for r in read_labels(labels_path)}
    screener = Screener(None, backend=backend, device=device, batch_size=batch_size)
    pix_thr = screener.engine.meta.calibration.pixel_threshold if screener.engine.meta.calibration else float("inf")
    detected: dict[str, list[bool]] = {t: [] for t in LOCAL}

    def on_result(r: StudyResult) -> None:
        row = labels.get(r.study)
        if row and row["type"] in detected and r.error is None:
            pair = _mask(out, row, r)
            if pair is not None and pair[1].any():
                detected[row["type"]].append(metrics.detected(pair[0], pair[1], pix_thr))
        r.maps = r.images = r.recons = None  # keep memory flat

    summary, rows = run(out / "studies", out / "results", screener, workers=workers, resume=False, progress=progress, return_maps=True, previews=True, on_result=on_result)
    score = {r["study"]: r["score"] for r in rows if r["score"] is not None}
    normal = np.array([score[s] for s, r in labels.items() if r["type"] == "normal" and s in score])
    table = {}
    for t in TYPES:
        s = np.array([score[k] for k, r in labels.items() if r["type"] == t and k in score])
        y = np.r_[np.zeros(len(normal), bool), np.ones(len(s), bool)]
        table[t] = {
            "n": len(s),
            "auroc": metrics.auroc(np.r_[normal, s], y) if len(s) and len(normal) else float("nan"),
            "detection_rate": float(np.mean(detected[t])) if detected.get(t) else float("nan"),
        }
    from .report import build_report

    report = build_report(out / "results", labels=labels_path, title="ra-sdk demo: synthetic brain MRI pathologies", progress=False)
    return {"summary": summary, "table": table, "backend": screener.backend, "results": out / "results", "report": report}


def format_demo(res: dict[str, Any]) -> str:
    lines = [f"{'pathology':<22}{'n':>4}{'AUROC':>8}{'detection':>11}"]
    for t, r in res["table"].items():
        det = "-" if np.isnan(r["detection_rate"]) else f"{r['detection_rate']:.2f}"
        lines.append(f"{t:<22}{r['n']:>4}{r['auroc']:>8.3f}{det:>11}")
    s = res["summary"]
    lines += ["", s.line() + f" [backend {res['backend']}]", f"results: {res['results'] / 'results.csv'}", f"report:  {res['report']} (open in a browser)"]
    return "\n".join(lines)
