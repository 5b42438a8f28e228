"""``ra-sdk demo``: write the demo studies, screen them with the bundled engine, and print
per-pathology AUROC and detection rate with the throughput. Core install only."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .results import StudyResult
from .run import run
from .screen import Screener


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


#: the columns of the demo table, as its header explains them (and the README)
LEGEND = (
    "AUROC: study scores of the type against the normal studies. "
    "flagged: fraction of the type's studies scoring above the engine's calibrated threshold (the report's 'flagged'). "
    "detected: fraction of annotated lesions with more than 10% of their pixels above the engine's calibrated pixel threshold "
    "(the paper's localisation rule; '-' for global changes without a lesion mask)."
)


def run_demo(out: str | Path, *, n_normal: int = 60, n_per_type: int = 12, seed: int = 0, backend: str = "auto", device: str = "auto", batch_size: int = 32, workers: int = 2, on_result: Callable[[StudyResult], None] | None = None) -> dict[str, Any]:
    """Write the demo studies under ``out``, screen them into ``out/results`` (with the
    HTML report) and measure per pathology type (see :data:`LEGEND`)."""
    from .data.demo_studies import DemoSpec, read_labels, write_demo_studies
    from .data.pathology import LOCAL
    from .report import build_report

    out = Path(out)
    labels_path = write_demo_studies(out, DemoSpec(n_normal=n_normal, n_per_type=n_per_type, seed=seed))
    labels = {r["study"]: r for r in read_labels(labels_path)}
    screener = Screener(None, backend=backend, device=device, batch_size=batch_size)
    cal = screener.engine.meta.calibration
    pix_thr = cal.pixel_threshold if cal else float("inf")
    detected: dict[str, list[bool]] = {t: [] for t in LOCAL}

    def on_study(r: StudyResult) -> None:
        row = labels.get(r.study)
        if row and row["type"] in detected and r.error is None:
            pair = _mask(out, row, r)
            if pair is not None and pair[1].any():
                detected[row["type"]].append(metrics.detected(pair[0], pair[1], pix_thr))
        r.maps = r.images = r.recons = None  # keep memory flat
        if on_result is not None:
            on_result(r)

    summary, rows = run(out / "studies", out / "results", screener, workers=workers, resume=False, return_maps=True, previews=True, on_result=on_study)
    score = {r["study"]: r["score"] for r in rows if r["score"] is not None}
    scored = [k for k in labels if k in score]
    table = metrics.by_type([score[k] for k in scored], [labels[k]["type"] for k in scored], threshold=screener.threshold)
    for t, r in table.items():
        r["detection_rate"] = float(np.mean(detected[t])) if detected.get(t) else float("nan")
    report = build_report(out / "results", labels=labels_path, title="ra-sdk demo: synthetic brain MRI pathologies")
    return {"summary": summary, "table": table, "backend": screener.backend, "precision": screener.precision, "results": out / "results", "report": report}


def format_demo(res: dict[str, Any]) -> str:
    lines = [f"{'pathology':<22}{'n':>4}{'AUROC':>8}{'flagged':>9}{'detected':>10}"]
    for t, r in res["table"].items():
        det = "-" if np.isnan(r["detection_rate"]) else f"{r['detection_rate']:.2f}"
        flagged = r.get("flagged", float("nan"))
        lines.append(f"{t:<22}{int(r['n']):>4}{r['auroc']:>8.3f}{flagged:>9.2f}{det:>10}")
    s = res["summary"]
    lines += ["", *textwrap.wrap(LEGEND, 100), "", s.line() + f" [backend {res['backend']}, {res['precision']}]", f"results: {res['results'] / 'results.csv'}", f"report:  {res['report']} (open in a browser)"]
    return "\n".join(lines)
