"""``ra-sdk report``: one self-contained HTML triage worklist for a screening run.

The file has no external references (no network, no CDN): styles, script, charts (SVG)
and pictures (JPEG data) are inline. It stays small for large runs: the worklist data is
a compact JSON table, and only the ``previews`` highest-scoring studies carry a picture,
which the page turns into an image only when its row is on screen (50 rows a page).

Inputs, all in the screening output folder: ``results.jsonl``, ``summary.json``,
``run.json`` and ``previews/<study>.jpg`` (written by ``ra-sdk screen --report``).
Missing previews of the top studies are made by re-scoring those studies with the run's
engine when it is still reachable.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from ._version import __version__
from .errors import ConfigError, RaSdkError

log = logging.getLogger(__name__)

REPORT = "report.html"
#: label values read as "normal" in a labels CSV (column ``type`` or ``label``)
NORMAL_LABELS = {"normal", "0", "false", "negative", "no", ""}


# ----------------------------------------------------------------------------- inputs
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise RaSdkError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The run's rows, highest score first, failures last (as ``results.jsonl`` holds them)."""
    path = run_dir / "results.jsonl"
    if not path.exists():
        raise RaSdkError(f"{run_dir}: no results.jsonl; is this a 'ra-sdk screen --out' folder?")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise RaSdkError(f"{path}: line {n} is not valid JSON") from None
    rows.sort(key=lambda r: (r.get("score") is None, -(r.get("score") or 0.0), r["study"]))
    return rows


def read_labels_csv(path: Path) -> tuple[dict[str, bool], dict[str, str]]:
    """(study id -> anomalous, study id -> type) from a CSV with columns ``study`` and
    ``type`` (or ``label``); types only from a ``type`` column."""
    from .data.demo import read_labels

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


# --------------------------------------------------------------------------- previews
def fill_previews(run_dir: Path, rows: list[dict[str, Any]], run: dict[str, Any] | None, top: int, *, progress: bool | None = None) -> int:
    """Make the missing previews of the ``top`` highest-scoring studies by re-scoring
    them with the run's engine. Returns how many were made (0 when the engine is gone)."""
    from .io import discover
    from .screen import PREVIEWS, Screener, safe_name, write_preview

    want = [r["study"] for r in rows[:top] if r.get("score") is not None and not (run_dir / PREVIEWS / f"{safe_name(r['study'])}.jpg").exists()]
    if not want or not run or not run.get("studies_root") or not Path(run["studies_root"]).exists():
        return 0
    engine_file = (run.get("engine") or {}).get("file")
    if engine_file and not Path(engine_file).exists():
        log.warning("engine %s is gone; %d studies will have no preview", engine_file, len(want))
        return 0
    from tqdm import tqdm

    by_id = {s.id: s for s in discover(run["studies_root"])}
    studies = [by_id[w] for w in want if w in by_id]
    screener = Screener(engine_file, threshold=run.get("threshold"))
    cal = screener.engine.meta.calibration
    pix_thr = cal.pixel_threshold if cal else float("nan")
    made = 0
    with tqdm(total=len(studies), desc="previews", unit="study", disable=True if progress is False else None) as bar:
        for _, r in screener.stream(studies, return_maps=True):
            if r.error is None:
                write_preview(run_dir, r, pix_thr)
                made += 1
            bar.update(1)
    screener.close()
    return made


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
    kinds = sorted({t for _, a, t in scored if a and t})
    if kinds:
        body = []
        for t in kinds:
            pick = np.array([(not a) or tt == t for _, a, tt in scored])
            yy = y[pick]
            auc = metrics.auroc(s[pick], yy)
            flagged = float(np.mean(s[pick][yy] > threshold)) if threshold is not None else float("nan")
            body.append(f"<tr><td>{html.escape(t)}</td><td>{int(yy.sum())}</td><td>{auc:.3f}</td><td>{flagged:.2f}</td></tr>")
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
    make_missing_previews: bool = True,
    progress: bool | None = None,
) -> Path:
    """Write the HTML worklist of a screening run; returns its path (default
    ``RUN_DIR/report.html``).

    Args:
        labels: a CSV (``study`` + ``type``/``label``) for the ROC curve and histograms by
            label; by default a ``labels.csv`` beside or above the screened folder.
        previews: how many of the highest-scoring studies carry a picture.
        make_missing_previews: re-score top studies that have no preview file.
    """
    from .screen import PREVIEWS, safe_name

    run_dir = Path(run_dir)
    if previews < 0 or page_size < 1:
        raise ConfigError("previews must be >= 0 and page size >= 1")
    rows = read_rows(run_dir)
    summary = _read_json(run_dir / "summary.json") or {}
    run = _read_json(run_dir / "run.json")
    if make_missing_previews and previews:
        made = fill_previews(run_dir, rows, run, previews, progress=progress)
        if made:
            log.info("made %d missing previews", made)

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
            p = run_dir / PREVIEWS / f"{safe_name(r['study'])}.jpg"
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
    page = re.sub(r"%%([A-Z]+)%%", lambda m: values[m.group(1)], _TEMPLATE)
    path = Path(out) if out else run_dir / REPORT
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>%%TITLE%%</title>
<style>
:root{--bg:#0f1115;--panel:#171a21;--line:#2a2f3a;--text:#e6e8ee;--muted:#9aa3b2;--flag:#ef4444;--ok:#22c55e;--warn:#f59e0b;--accent:#60a5fa}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--text)}
header{padding:14px 20px;border-bottom:1px solid var(--line);background:var(--panel)}
h1{font-size:18px;margin:0 0 4px}.disclaimer{color:var(--flag);font-weight:600;letter-spacing:.02em}
.meta{border-collapse:collapse;margin-top:8px;font-size:13px}.meta th{color:var(--muted);font-weight:500;text-align:left;padding:1px 12px 1px 0;vertical-align:top}
.charts{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start;margin-top:10px}
.chart{background:#11141a;border:1px solid var(--line);border-radius:6px}.chart .axis,.chart .frame{stroke:var(--muted);fill:none}.chart .diag{stroke:var(--line);stroke-dasharray:4 3}
.chart .roc{fill:none;stroke:var(--accent);stroke-width:2}.chart .thr{stroke:var(--warn);stroke-dasharray:5 3}.chart .small{fill:var(--muted);font-size:10px}
.types{border-collapse:collapse;font-size:12px}.types th,.types td{border-bottom:1px solid var(--line);padding:2px 8px;text-align:right}.types td:first-child,.types th:first-child{text-align:left}
main{padding:12px 20px}.bar{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin-bottom:10px}
button{background:#222733;color:var(--text);border:1px solid var(--line);border-radius:5px;padding:5px 10px;cursor:pointer;font:inherit}
button.on{background:var(--accent);color:#08111f;border-color:var(--accent)}button:disabled{opacity:.4;cursor:default}
input[type=search]{background:#11141a;color:var(--text);border:1px solid var(--line);border-radius:5px;padding:5px 8px;min-width:220px}
#worklist{width:100%;border-collapse:collapse}#worklist th{color:var(--muted);font-weight:500;text-align:left;border-bottom:1px solid var(--line);padding:6px}
#worklist td{border-bottom:1px solid var(--line);padding:4px 6px;vertical-align:middle}#worklist tbody tr{cursor:pointer}#worklist tbody tr:hover{background:#1d212b}
.thumb{width:64px;height:64px;border-radius:4px;background:#000;overflow:hidden;color:var(--muted);font-size:10px;line-height:64px;text-align:center}
.thumb img{display:block;height:64px;width:192px;max-width:none;margin-left:-128px}
.num{text-align:right;font-variant-numeric:tabular-nums}.flag{color:var(--flag);font-weight:600}.okc{color:var(--ok)}.fail{color:var(--warn)}.muted{color:var(--muted)}
.study{max-width:420px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#detail{position:fixed;inset:0;background:rgba(0,0,0,.7);display:none;align-items:center;justify-content:center}#detail.open{display:flex}
#detail .box{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:16px;width:min(980px,96vw);max-height:94vh;overflow:auto}
#detail .big{width:100%;image-rendering:auto;border-radius:4px;background:#000}.caps{display:grid;grid-template-columns:repeat(3,1fr);color:var(--muted);font-size:12px;text-align:center}
#detail dl{display:grid;grid-template-columns:140px 1fr;gap:2px 10px;font-size:13px}#detail dt{color:var(--muted)}#detail dd{margin:0;word-break:break-all}
footer{padding:10px 20px;color:var(--muted);font-size:12px}
</style></head>
<body>
<header><h1>%%TITLE%%</h1><div class="disclaimer">NOT FOR DIAGNOSTIC USE: unsupervised anomaly screening; every finding needs a radiologist's read.</div>
<table class="meta">%%HEADER%%</table>%%CHARTS%%</header>
<main>
<div class="bar" role="toolbar">
<button data-filter="all" class="on">All (<span data-count="all"></span>)</button>
<button data-filter="flagged">Flagged (<span data-count="flagged"></span>)</button>
<button data-filter="failed">Failed (<span data-count="failed"></span>)</button>
<input type="search" id="q" placeholder="filter by study id" aria-label="filter by study id">
<span style="flex:1"></span>
<button id="prev">&larr; prev</button><span id="pageinfo" class="muted"></span><button id="next">next &rarr;</button>
</div>
<table id="worklist"><thead><tr><th>#</th><th>map</th><th>study</th><th class="num">score</th><th class="num">percentile</th><th>flag</th><th class="num">slice</th><th>label</th><th>notes</th></tr></thead><tbody></tbody></table>
</main>
<div id="detail" role="dialog" aria-modal="true"><div class="box">
<div class="bar"><strong id="d-title"></strong><span style="flex:1"></span><button id="d-prev">&larr;</button><button id="d-next">&rarr;</button><button id="d-close">close (Esc)</button></div>
<div id="d-pic"></div><div class="caps" id="d-caps"><span>input (driving slice)</span><span>pseudo-healthy reconstruction</span><span>anomaly map (outline: above pixel threshold)</span></div>
<dl id="d-info"></dl></div></div>
<footer>%%GENERATED%%. Self-contained file: no network access.</footer>
<script type="application/json" id="data">%%DATA%%</script>
<script type="application/json" id="pics">%%PICS%%</script>
<script>
(function(){
"use strict";
const D=JSON.parse(document.getElementById("data").textContent);
const P=JSON.parse(document.getElementById("pics").textContent);
const C={};D.cols.forEach((c,i)=>C[c]=i);
const rows=D.rows.map((r,i)=>({r:r,i:i}));
let filter="all",query="",page=0,view=rows,cur=-1;
const tbody=document.querySelector("#worklist tbody");
function el(tag,cls,text){const e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined&&text!==null)e.textContent=String(text);return e;}
function fmt(v,d){return v===null||v===undefined?"":Number(v).toFixed(d);}
function pic(i){return P[String(i)]?"data:image/jpeg;base64,"+P[String(i)]:null;}
function apply(){
  const q=query.toLowerCase();
  view=rows.filter(x=>{const r=x.r;
    if(filter==="flagged"&&r[C.flagged]!==true)return false;
    if(filter==="failed"&&!r[C.error])return false;
    return !q||String(r[C.study]).toLowerCase().includes(q);});
  page=0;render();
}
function render(){
  const n=view.length,pages=Math.max(1,Math.ceil(n/D.pageSize));
  page=Math.min(Math.max(page,0),pages-1);
  const part=view.slice(page*D.pageSize,(page+1)*D.pageSize);
  const frag=document.createDocumentFragment();
  for(const x of part){const r=x.r,tr=el("tr");tr.dataset.index=x.i;tr.tabIndex=0;
    tr.appendChild(el("td","num",x.i+1));
    const th=el("td"),box=el("div","thumb"),src=pic(x.i);
    if(src){const im=el("img");im.loading="lazy";im.alt="map";im.src=src;box.appendChild(im);}else box.textContent=r[C.error]?"failed":"no preview";
    th.appendChild(box);tr.appendChild(th);
    tr.appendChild(el("td","study",r[C.study]));
    tr.appendChild(el("td","num score",fmt(r[C.score],4)));
    tr.appendChild(el("td","num",r[C.percentile]===null?"":fmt(r[C.percentile],1)));
    tr.appendChild(r[C.error]?el("td","fail","failed"):r[C.flagged]===true?el("td","flag","FLAG"):el("td","okc",r[C.flagged]===false?"-":""));
    tr.appendChild(el("td","num",r[C.max_slice]===null?"":(r[C.max_slice]+1)+"/"+r[C.n_slices]));
    tr.appendChild(el("td","muted",r[C.label]||""));
    tr.appendChild(el("td","muted",r[C.error]?(r[C.error_kind]+": "+r[C.error]):(r[C.notes]||"")));
    frag.appendChild(tr);}
  tbody.replaceChildren(frag);
  document.getElementById("pageinfo").textContent=n?("rows "+(page*D.pageSize+1)+"-"+(page*D.pageSize+part.length)+" of "+n+" (page "+(page+1)+"/"+pages+")"):"no studies";
  document.getElementById("prev").disabled=page===0;document.getElementById("next").disabled=page>=pages-1;
}
function open(i){cur=i;const r=D.rows[i];
  document.getElementById("d-title").textContent="#"+(i+1)+"  "+r[C.study];
  const box=document.getElementById("d-pic");box.replaceChildren();const src=pic(i);
  if(src){const im=el("img","big");im.alt="input, reconstruction and anomaly map";im.src=src;box.appendChild(im);document.getElementById("d-caps").style.display="";}
  else{box.appendChild(el("p","muted",r[C.error]?"This study failed to screen.":"No picture embedded: only the "+D.previewLimit+" highest-scoring studies carry one (ra-sdk report --previews N)."));document.getElementById("d-caps").style.display="none";}
  const dl=document.getElementById("d-info");dl.replaceChildren();
  const add=(k,v)=>{if(v===null||v===undefined||v==="")return;dl.appendChild(el("dt",null,k));dl.appendChild(el("dd",null,v));};
  add("score",fmt(r[C.score],5));add("percentile of normals",r[C.percentile]===null?null:fmt(r[C.percentile],1));
  add("flag",r[C.flagged]===true?"flagged":r[C.flagged]===false?"not flagged":null);
  add("driving slice",r[C.max_slice]===null?null:("slice "+(r[C.max_slice]+1)+" of "+r[C.n_slices]+" (drove the study score)"));
  add("label",r[C.label]);add("error",r[C.error]?(r[C.error_kind]+": "+r[C.error]):null);add("notes",r[C.notes]);
  add("files",r[C.paths]);add("DICOM outputs",(r[C.outputs]||[]).join(", "));
  document.getElementById("detail").classList.add("open");}
function close(){document.getElementById("detail").classList.remove("open");cur=-1;}
function step(d){const k=view.findIndex(x=>x.i===cur);if(k<0)return;const j=k+d;if(j<0||j>=view.length)return;open(view[j].i);}
document.querySelectorAll("[data-count]").forEach(s=>s.textContent=D.counts[s.dataset.count]);
document.querySelectorAll("[data-filter]").forEach(b=>b.addEventListener("click",()=>{filter=b.dataset.filter;
  document.querySelectorAll("[data-filter]").forEach(o=>o.classList.toggle("on",o===b));apply();}));
document.getElementById("q").addEventListener("input",e=>{query=e.target.value;apply();});
document.getElementById("prev").addEventListener("click",()=>{page--;render();window.scrollTo(0,0);});
document.getElementById("next").addEventListener("click",()=>{page++;render();window.scrollTo(0,0);});
tbody.addEventListener("click",e=>{const tr=e.target.closest("tr");if(tr)open(Number(tr.dataset.index));});
tbody.addEventListener("keydown",e=>{if(e.key!=="Enter")return;const tr=e.target.closest("tr");if(tr)open(Number(tr.dataset.index));});
document.getElementById("d-close").addEventListener("click",close);
document.getElementById("d-prev").addEventListener("click",()=>step(-1));document.getElementById("d-next").addEventListener("click",()=>step(1));
document.getElementById("detail").addEventListener("click",e=>{if(e.target.id==="detail")close();});
document.addEventListener("keydown",e=>{if(cur<0)return;if(e.key==="Escape")close();else if(e.key==="ArrowRight")step(1);else if(e.key==="ArrowLeft")step(-1);});
render();
document.body.dataset.readyMs=String(performance.now());
document.body.dataset.ready="1";
})();
</script></body></html>
"""
