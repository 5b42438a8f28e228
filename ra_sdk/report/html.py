"""``ra-sdk report``: one self-contained HTML triage worklist for a screening run.

The file has no external references (no network, no CDN): styles, script, charts (SVG)
and pictures (JPEG data) are inline. It stays small for large runs: the worklist data is
a compact JSON table, and only the ``previews`` highest-scoring studies carry a picture,
which the page turns into an image only when its row is on screen (50 rows a page).

Inputs, all in the screening output folder: ``results.jsonl``, ``summary.json``,
``run.json`` and ``previews/<study>.jpg`` (written by ``ra-sdk screen --report``). The
report only reads that folder; making missing previews is a screening step
(:func:`ra_sdk.run.make_missing_previews`, which ``ra-sdk report`` runs first).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from .._version import __version__
from ..errors import ConfigError
from ..io.files import atomic_write
from ..results import read_json, read_rows
from .previews import preview_path

log = logging.getLogger(__name__)

REPORT = "report.html"
#: label values read as "normal" in a labels CSV (column ``type`` or ``label``)
NORMAL_LABELS = {"normal", "0", "false", "negative", "no", ""}


# ----------------------------------------------------------------------------- inputs
def read_labels_csv(path: Path) -> tuple[dict[str, bool], dict[str, str]]:
    """(study id -> anomalous, study id -> type) from a CSV with columns ``study`` and
    ``type`` (or ``label``); types only from a ``type`` column."""
    from ..data.demo_studies import read_labels

    rows = read_labels(path)
    cols = set(rows[0]) if rows else set()
    key = "type" if "type" in cols else "label" if "label" in cols else None
    if rows and ("study" not in cols or key is None):
        raise ConfigError(f"{path}: a labels CSV needs the columns 'study' and 'type' (or 'label'), got {sorted(cols)}")
    anomalous = {r["study"]: (r[key] or "").strip().lower() not in NORMAL_LABELS for r in rows} if key else {}
    types = {r["study"]: r["type"] for r in rows} if key == "type" else {}
    return anomalous, types


def find_labels(run: dict[str, Any] | None) -> Path | None:
    """A ``labels.csv`` beside or above the screened folder (the demo layout), if any."""
    if not run or not run.get("studies_root"):
        return None
    root = Path(run["studies_root"])
    for cand in (root / "labels.csv", root.parent / "labels.csv"):
        if cand.is_file():
            return cand
    return None


# ----------------------------------------------------------------------------- charts
def _svg_histogram(groups: list[tuple[str, np.ndarray, str]], threshold: float | None, width: int = 420, height: int = 190) -> str:
    """Score histograms (one per group, same bins) with the flag threshold as a line."""
    allv = np.concatenate([g for _, g, _ in groups if g.size]) if any(g.size for _, g, _ in groups) else np.zeros(0)
    if not allv.size:
        return ""
    lo, hi = float(allv.min()), float(allv.max())
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 31)
    pad_l, pad_b, pad_t = 36, 28, 10
    w, h = width - pad_l - 8, height - pad_b - pad_t
    counts = [np.histogram(g, bins)[0] / max(len(g), 1) for _, g, _ in groups]
    top = max(float(c.max()) for c in counts) or 1.0
    x = lambda v: pad_l + (v - lo) / (hi - lo) * w  # noqa: E731
    y = lambda f: pad_t + h - f / top * h  # noqa: E731
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="score histogram">']
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" class="axis"/>')
    for (_, _, colour), c in zip(groups, counts, strict=True):
        for i, f in enumerate(c):
            if f > 0:
                parts.append(f'<rect x="{x(bins[i]):.1f}" y="{y(f):.1f}" width="{max(x(bins[i + 1]) - x(bins[i]) - 1, 1):.1f}" height="{pad_t + h - y(f):.1f}" fill="{colour}" fill-opacity="0.55"/>')
    if threshold is not None and np.isfinite(threshold):
        parts.append(f'<line x1="{x(threshold):.1f}" y1="{pad_t}" x2="{x(threshold):.1f}" y2="{pad_t + h}" class="thr"/>')
        parts.append(f'<text x="{x(threshold) + 3:.1f}" y="{pad_t + 10}" class="small">flag &gt; {threshold:.4g}</text>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{x(v):.1f}" y="{height - 10}" class="small" text-anchor="middle">{v:.3g}</text>')
    for i, (name, g, colour) in enumerate(groups):
        parts.append(f'<rect x="{pad_l + 8}" y="{pad_t + 18 + 14 * i}" width="10" height="10" fill="{colour}"/><text x="{pad_l + 22}" y="{pad_t + 27 + 14 * i}" class="small">{html.escape(name)} (n={len(g)})</text>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height}" class="small" text-anchor="middle">study score</text></svg>')
    return "".join(parts)


def _svg_roc(scores: np.ndarray, labels: np.ndarray, size: int = 190) -> str:
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    auc = metrics.auroc(scores, labels)
    pad = 30
    s = size - pad - 8
    pts = " ".join(f"{pad + f * s:.1f},{8 + (1 - t) * s:.1f}" for f, t in zip(fpr, tpr, strict=True))
    return (
        f'<svg class="chart" viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img" aria-label="ROC curve">'
        f'<rect x="{pad}" y="8" width="{s}" height="{s}" class="frame"/>'
        f'<line x1="{pad}" y1="{8 + s}" x2="{pad + s}" y2="8" class="diag"/>'
        f'<polyline points="{pts}" class="roc"/>'
        f'<text x="{pad + 6}" y="22" class="small">AUROC {auc:.3f}</text>'
        f'<text x="{pad + s / 2:.0f}" y="{size - 2}" class="small" text-anchor="middle">false positive rate</text>'
        f'<text x="10" y="{8 + s / 2:.0f}" class="small" transform="rotate(-90 10 {8 + s / 2:.0f})" text-anchor="middle">true positive rate</text></svg>'
    )


def _label_section(rows: list[dict[str, Any]], labels: dict[str, bool], types: dict[str, str], threshold: float | None) -> tuple[str, dict[str, Any]]:
    """ROC curve, histograms by label and a per-type table; ("", {}) without usable labels."""
    scored = [(r["score"], labels[r["study"]], types.get(r["study"], "")) for r in rows if r.get("score") is not None and r["study"] in labels]
    if not scored:
        return "", {}
    s = np.array([v for v, _, _ in scored], np.float64)
    y = np.array([a for _, a, _ in scored], bool)
    stats: dict[str, Any] = {"n_labelled": len(scored), "n_anomalous": int(y.sum())}
    hist = _svg_histogram([("normal", s[~y], "#3b82f6"), ("anomalous", s[y], "#ef4444")], threshold)
    if not y.any() or y.all():
        return f'<div class="charts">{hist}</div><p class="muted">ROC needs both normal and anomalous labels.</p>', stats
    stats["auroc"] = metrics.auroc(s, y)
    table = ""
    typed = np.array([not a or bool(t) for _, a, t in scored])  # normals and anomalies with a type
    kinds = ["normal" if not a else t for _, a, t in scored]
    per_type = metrics.by_type(s[typed], [k for k, keep in zip(kinds, typed) if keep], threshold=threshold) if typed[y].any() else {}
    if per_type:
        body = [f"<tr><td>{html.escape(t)}</td><td>{int(r['n'])}</td><td>{r['auroc']:.3f}</td><td>{r.get('flagged', float('nan')):.2f}</td></tr>" for t, r in per_type.items()]
        table = '<table class="types"><thead><tr><th>type</th><th>n</th><th>AUROC vs normals</th><th>flagged</th></tr></thead><tbody>' + "".join(body) + "</tbody></table>"
    return f'<div class="charts">{_svg_roc(s, y)}{hist}{table}</div>', stats


# ------------------------------------------------------------------------------- html
def _script_json(obj: Any) -> str:
    """JSON safe inside <script>: no '</script>' or '<!--' can appear."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not np.isfinite(v) else v


def _engine_lines(run: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not run:
        return [("engine", "unknown (no run.json in the folder)")]
    e = run.get("engine") or {}
    m, p, sc, c = e.get("model") or {}, e.get("preset") or {}, e.get("score") or {}, e.get("calibration") or {}
    nets = e.get("networks") or {}
    precision = ", ".join(sorted({str(n.get("precision")) for n in nets.values()})) or "?"
    out = [
        ("engine", f"{Path(str(e.get('file', '?'))).name} ({e.get('kind', '?')}, {precision}), backend {run.get('backend', '?')}"),
        ("model", f"{m.get('name', '?')}, input {m.get('image_size', '?')}x{m.get('image_size', '?')}; preset {p.get('name', '?')} ({p.get('modality', '?')})"),
        ("score", f"perceptual {sc.get('perceptual', '?')}, CLAHE {sc.get('use_clahe', '?')}, image score {sc.get('aggregation', '?')}, study {sc.get('study_aggregation', '?')}"),
    ]
    if c:
        out.append(("calibration", f"{c.get('n', '?')} normals ({c.get('source', '')}); flag above p{c.get('percentile', 95):g} = {c.get('threshold', float('nan')):.4g}; pixel threshold {c.get('pixel_threshold', float('nan')):.4g}"))
    else:
        out.append(("calibration", "none: no flags or percentiles"))
    thr = run.get("threshold")
    if thr is not None and c and abs(float(thr) - float(c.get("threshold", thr))) > 1e-12:
        out.append(("threshold", f"{float(thr):.4g} (set for this run)"))
    return out


def build_report(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    labels: str | Path | None = None,
    previews: int = 500,
    page_size: int = 50,
    title: str | None = None,
) -> Path:
    """Write the HTML worklist of a screening run; returns its path (default
    ``RUN_DIR/report.html``).

    Args:
        labels: a CSV (``study`` + ``type``/``label``) for the ROC curve and histograms by
            label; by default a ``labels.csv`` beside or above the screened folder.
        previews: how many of the highest-scoring studies carry a picture.
    """
    run_dir = Path(run_dir)
    if previews < 0 or page_size < 1:
        raise ConfigError("previews must be >= 0 and page size >= 1")
    rows = read_rows(run_dir)
    summary = read_json(run_dir / "summary.json") or {}
    run = read_json(run_dir / "run.json")

    labels_path = Path(labels) if labels else find_labels(run)
    label_of, type_of = read_labels_csv(labels_path) if labels_path else ({}, {})
    threshold = run.get("threshold") if run else None
    label_html, label_stats = _label_section(rows, label_of, type_of, threshold)
    if not label_html:
        scores = np.array([r["score"] for r in rows if r.get("score") is not None], np.float64)
        label_html = f'<div class="charts">{_svg_histogram([("all studies", scores, "#6366f1")], threshold)}</div>' if scores.size else ""

    cols = ["study", "score", "percentile", "flagged", "max_slice", "n_slices", "error", "error_kind", "notes", "paths", "label", "outputs"]
    table = []
    pics: dict[str, str] = {}
    for i, r in enumerate(rows):
        lab = type_of.get(r["study"]) or ({True: "anomalous", False: "normal"}.get(label_of[r["study"]]) if r["study"] in label_of else None)
        table.append([_clean(r.get(c)) for c in cols[:-2]] + [lab, r.get("outputs") or []])
        if i < previews and r.get("score") is not None:
            p = preview_path(run_dir, r["study"])
            if p.is_file():
                pics[str(i)] = base64.b64encode(p.read_bytes()).decode("ascii")
    n_flagged = sum(1 for r in rows if r.get("flagged"))
    n_failed = sum(1 for r in rows if r.get("error"))
    data = {
        "cols": cols,
        "rows": table,
        "pageSize": page_size,
        "previewLimit": previews,
        "counts": {"all": len(rows), "flagged": n_flagged, "failed": n_failed},
    }
    head_rows = _engine_lines(run)
    if summary:
        head_rows.append(("run", f"{summary.get('studies', len(rows))} studies: {summary.get('screened', '?')} screened, {n_flagged} flagged, {n_failed} failed; {summary.get('images', '?')} images in {summary.get('seconds', 0):.1f} s ({summary.get('images_per_s', 0):.1f} images/s)"))
    if run and run.get("studies_root"):
        head_rows.append(("studies", str(run["studies_root"])))
    if labels_path:
        extra = f"; AUROC {label_stats['auroc']:.3f}" if "auroc" in label_stats else ""
        head_rows.append(("labels", f"{labels_path.name}: {label_stats.get('n_labelled', 0)} labelled, {label_stats.get('n_anomalous', 0)} anomalous{extra}"))
    header = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in head_rows)
    title = title or f"ra-sdk worklist: {run_dir.resolve().name}"
    values = {
        "TITLE": html.escape(title),
        "HEADER": header,
        "CHARTS": label_html,
        "GENERATED": html.escape(f"generated {time.strftime('%Y-%m-%d %H:%M')} by ra-sdk {__version__}"),
        "DATA": _script_json(data),
        "PICS": _script_json(pics),
    }
    # one pass: text that came from the run (titles, paths) is never substituted again
    template = files(__package__).joinpath("template.html").read_text(encoding="utf-8")
    page = re.sub(r"%%([A-Z]+)%%", lambda m: values[m.group(1)], template)
    path = Path(out) if out else run_dir / REPORT
    atomic_write(path, page)
    return path
