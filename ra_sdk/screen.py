"""Screening: the embeddable :class:`Screener` and the resumable batch run behind
``ra-sdk screen``.

    screener = ra_sdk.load()                     # the bundled demo engine, backend/device "auto"
    results = screener.screen(["a.dcm", "vol.nii.gz", array])
    r = screener.screen_one(image)               # low-latency path for one 2-D image

A batch run is a pipeline: discovery, decode + preprocessing in worker threads (a bounded
window of studies in flight), batching across studies, the engine and the score, and an
append-only journal (fsync'd per batch). A run killed at any point and started again skips
the studies in the journal; at the end results.csv and results.jsonl are written sorted by
score, atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .engine import Engine, read_engine
from .errors import ConfigError, RaSdkError, ReadError
from .io import Study, discover, read_study, study_for_path
from .pipeline import Scorer
from .presets import prepare_stack
from .scoring import study_score

log = logging.getLogger(__name__)

JOURNAL = ".ra-sdk-journal.jsonl"
CSV_FIELDS = ["study", "score", "percentile", "flagged", "max_slice", "n_slices", "error", "error_kind", "notes", "paths"]


@dataclass
class StudyResult:
    """One screened study. ``error`` is set instead of raising for bad input."""

    study: str
    paths: list[str]
    score: float | None = None
    percentile: float | None = None
    flagged: bool | None = None
    max_slice: int | None = None  # index, in the study's own slice order, of the slice that drove the score
    n_slices: int = 0
    error: str | None = None
    error_kind: str | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    maps: np.ndarray | None = None  # (n_slices, H, W) anomaly maps, on request
    images: np.ndarray | None = None  # (n_slices, H, W) model inputs, on request
    recons: np.ndarray | None = None  # (n_slices, H, W) pseudo-healthy reconstructions, on request
    slices: np.ndarray | None = None  # index in the study of each screened slice, on request
    outputs: list[str] = field(default_factory=list)  # files written for this study (DICOM SC/SEG)

    def row(self) -> dict[str, Any]:
        """The CSV/JSONL record (no arrays)."""
        return {
            "study": self.study,
            "score": None if self.score is None else float(self.score),
            "percentile": None if self.percentile is None else round(float(self.percentile), 3),
            "flagged": self.flagged,
            "max_slice": self.max_slice,
            "n_slices": self.n_slices,
            "error": self.error,
            "error_kind": self.error_kind,
            "notes": "; ".join(self.notes),
            "paths": ";".join(self.paths),
            **({"outputs": self.outputs} if self.outputs else {}),
        }


@dataclass
class _Prepared:
    study: Study | None
    sid: str
    paths: list[str]
    images: np.ndarray | None = None
    slice_index: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    decode_s: float = 0.0


class Screener:
    """An engine, its runners and its preset: screens studies, files or arrays.

    Safe to call from several threads (the runners serialise engine calls); warms up once
    at construction; holds no per-study state between calls.
    """

    def __init__(self, engine: str | Path | Engine | None = None, *, backend: str = "auto", device: str = "auto", batch_size: int = 32, threshold: float | None = None, precision: str = "fp32"):
        from .data import DEMO_ENGINE

        self.engine = engine if isinstance(engine, Engine) else read_engine(engine or DEMO_ENGINE)
        self.preset = self.engine.meta.preset
        self.batch_size = batch_size
        cal = self.engine.meta.calibration
        self.threshold = threshold if threshold is not None else (cal.threshold if cal else None)
        self.scorer = Scorer(self.engine, backend=backend, device=device, precision=precision, batch_size=batch_size)
        size = self.preset.size
        self.scorer.score(np.zeros((1, size, size), np.float32))  # warm-up: sessions, kernels, graphs

    @property
    def backend(self) -> str:
        return self.scorer.recon.name

    # ------------------------------------------------------------ preparation
    def prepare(self, item: Any, index: int = 0) -> _Prepared:
        """Decode and preprocess one item (path, Study or array); never raises for bad input."""
        t = time.perf_counter()
        if isinstance(item, np.ndarray):
            p = _Prepared(None, f"array-{index}", [])
            try:
                arr = np.asarray(item, np.float32)
                if arr.ndim == 2:
                    arr = arr[None]
                if arr.ndim != 3 or min(arr.shape) < 1:
                    raise ValueError(f"expected a (H, W) or (N, H, W) array, got shape {item.shape}")
                p.images, p.slice_index = prepare_stack(arr, self.preset)
            except ValueError as err:
                p.error, p.error_kind = str(err), "bad-array"
        else:
            if isinstance(item, Study):
                p = _Prepared(item, item.id, [str(x) for x in item.paths])
            else:
                p = _Prepared(None, Path(item).name, [str(item)])
            try:
                study = p.study or study_for_path(item)
                sl = read_study(study, apply_voi=self.preset.apply_voi)
                p.notes = list(sl.notes)
                p.images, p.slice_index = prepare_stack(sl.pixels, self.preset)
            except ReadError as err:
                p.error, p.error_kind = str(err), err.kind
            except RaSdkError as err:
                p.error, p.error_kind = str(err), "error"
            except (ValueError, MemoryError, OSError) as err:  # a decoder's own failure on odd data
                p.error, p.error_kind = f"{p.paths[0] if p.paths else p.sid}: {type(err).__name__}: {err}", "unreadable"
        p.decode_s = time.perf_counter() - t
        return p

    # --------------------------------------------------------------- scoring
    def _finish(self, p: _Prepared, scores: np.ndarray | None, maps: np.ndarray | None, recons: np.ndarray | None, keep: bool, infer_s: float) -> StudyResult:
        r = StudyResult(p.sid, p.paths, notes=p.notes, timings={"decode_s": p.decode_s, "score_s": infer_s})
        if p.error is not None or scores is None or p.images is None or p.slice_index is None:
            r.error, r.error_kind = p.error or "no image", p.error_kind or "error"
            return r
        cfg = self.engine.meta.score
        s, k = study_score(scores, how=cfg.study_aggregation, k=cfg.study_k)
        r.score, r.n_slices, r.max_slice = s, len(scores), int(p.slice_index[k])
        cal = self.engine.meta.calibration
        r.percentile = cal.percentile_of(s) if cal else None
        r.flagged = None if self.threshold is None else bool(s > self.threshold)
        if keep:
            r.maps, r.images, r.recons, r.slices = maps, p.images, recons, p.slice_index
        return r

    def screen_one(self, image: np.ndarray, *, return_maps: bool = False) -> StudyResult:
        """The low-latency path: one 2-D image (or a small stack) in, one result out."""
        return self.screen([image], return_maps=return_maps)[0]

    def screen(self, items: Sequence[Any] | Iterable[Any], *, return_maps: bool = False, workers: int = 2) -> list[StudyResult]:
        """Screen paths, Studies or arrays; one result per item, in order."""
        items = list(items)
        out: dict[int, StudyResult] = {}
        for idx, r in self.stream(items, return_maps=return_maps, workers=workers):
            out[idx] = r
        return [out[i] for i in range(len(items))]

    def stream(self, items: Sequence[Any], *, return_maps: bool = False, workers: int = 2, window: int | None = None) -> Iterator[tuple[int, StudyResult]]:
        """Pipeline over ``items``: decode in ``workers`` threads (at most ``window`` studies
        in flight), batch slices across studies, score; yields (index, result) as studies finish."""
        window = window or max(4 * workers, 2 * self.batch_size)
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ra-sdk-decode")
        pending: deque[tuple[int, Future[_Prepared]]] = deque()
        it = iter(enumerate(items))

        def refill() -> None:
            while len(pending) < window:
                try:
                    i, item = next(it)
                except StopIteration:
                    return
                pending.append((i, pool.submit(self.prepare, item, i)))

        # Slices waiting for the engine, and per-study accumulators.
        queue: list[tuple[int, int]] = []  # (study slot, slice number)
        slots: dict[int, dict[str, Any]] = {}
        try:
            refill()
            while pending or queue:
                # Take decoded studies in order until a batch is full (or nothing is left).
                while pending and len(queue) < self.batch_size:
                    i, fut = pending.popleft()
                    p = fut.result()
                    refill()
                    if p.error is not None or p.images is None or len(p.images) == 0:
                        yield i, self._finish(p, None, None, None, False, 0.0)
                        continue
                    n = len(p.images)
                    slots[i] = {"p": p, "scores": np.empty(n), "maps": [None] * n, "recons": [None] * n, "left": n, "t": 0.0}
                    queue.extend((i, k) for k in range(n))
                if not queue:
                    continue
                batch, queue = queue[: self.batch_size], queue[self.batch_size :]
                x = np.stack([slots[i]["p"].images[k] for i, k in batch])
                t = time.perf_counter()
                maps, scores, recons = self.scorer.score(x)
                dt = (time.perf_counter() - t) / len(batch)
                done = []
                for j, (i, k) in enumerate(batch):
                    sl = slots[i]
                    sl["scores"][k] = scores[j]
                    if return_maps:
                        sl["maps"][k], sl["recons"][k] = maps[j], recons[j]
                    sl["t"] += dt
                    sl["left"] -= 1
                    if sl["left"] == 0:
                        done.append(i)
                for i in done:
                    sl = slots.pop(i)
                    m = np.stack(sl["maps"]) if return_maps else None
                    rc = np.stack(sl["recons"]) if return_maps else None
                    yield i, self._finish(sl["p"], sl["scores"], m, rc, return_maps, sl["t"])
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.scorer.close()

    def __enter__(self) -> Screener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(engine_path: str | Path | None = None, backend: str = "auto", device: str = "auto", **kw: Any) -> Screener:
    """The front door: a warmed-up :class:`Screener` (None = the bundled demo engine)."""
    return Screener(engine_path, backend=backend, device=device, **kw)


# ---------------------------------------------------------------------- batch runs
def safe_name(study_id: str) -> str:
    """A file name for a study id that cannot leave the output folder."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", study_id).strip("._")[:80] or "study"
    return f"{base}-{hashlib.sha1(study_id.encode()).hexdigest()[:8]}"


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Finished rows by study id; a torn last line (a kill mid-write) is ignored."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "study" in row:
                rows.setdefault(row["study"], row)
    return rows


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_results(out: Path, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """results.csv and results.jsonl, sorted by score (highest first; failures last)."""
    ordered = sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["study"]))
    _atomic_write(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in ordered))
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in ordered:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    _atomic_write(out / "results.csv", buf.getvalue())
    return ordered


@dataclass
class RunSummary:
    studies: int
    screened: int
    failed: int
    flagged: int
    skipped_resumed: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.studies} studies: {self.screened} screened, {self.flagged} flagged, {self.failed} failed"
                f"{f', {self.skipped_resumed} already done' if self.skipped_resumed else ''}; "
                f"{self.images} images in {self.seconds:.1f} s ({self.images_per_s:.1f} images/s)")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "images_per_s": self.images_per_s}


def _preview(r: StudyResult, pixel_threshold: float) -> np.ndarray:
    from .overlay import driving_index, preview_panels

    assert r.maps is not None and r.images is not None and r.recons is not None
    k = driving_index(r.slices, r.max_slice, r.maps)
    return preview_panels(r.images[k], r.recons[k], r.maps[k], pixel_threshold)


def save_maps(out: Path, r: StudyResult, pixel_threshold: float = float("nan")) -> None:
    """Raw maps of the screened slices (.npy) and a PNG of the driving slice:
    input | pseudo-healthy reconstruction | heatmap overlay."""
    from .io.write import write_png

    name = safe_name(r.study)
    (out / "maps").mkdir(exist_ok=True)
    assert r.maps is not None
    np.save(out / "maps" / f"{name}.npy", r.maps.astype(np.float32), allow_pickle=False)
    write_png(out / "maps" / f"{name}.png", _preview(r, pixel_threshold)[..., ::-1])


PREVIEWS = "previews"


def write_preview(out: Path, r: StudyResult, pixel_threshold: float) -> Path:
    """``previews/<study>.jpg``, the small picture the HTML report embeds."""
    from .overlay import encode_jpeg

    path = out / PREVIEWS / f"{safe_name(r.study)}.jpg"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(encode_jpeg(_preview(r, pixel_threshold)))
    return path


def _write_dicom(out: Path, study: Study, r: StudyResult, screener: Screener) -> list[str]:
    """SC + SEG for one DICOM study under ``dicom/<study>/``; relative paths written."""
    from .dicom_out import write_study_outputs

    assert r.maps is not None and r.slices is not None and r.max_slice is not None
    cal = screener.engine.meta.calibration
    files = write_study_outputs(
        study.paths, r.maps, r.slices, r.max_slice, screener.preset,
        cal.pixel_threshold if cal else float("nan"), out / "dicom" / safe_name(r.study),
        score=r.score, percentile=r.percentile, apply_voi=screener.preset.apply_voi,
    )
    return [f.relative_to(out).as_posix() for f in files]


def write_run_info(out: Path, studies_root: Path, screener: Screener) -> None:
    """``run.json``: what the report header shows (engine, calibration, backend, threshold)."""
    from ._version import __version__
    from .engine import describe

    info = {
        "studies_root": str(Path(studies_root).resolve()),
        "engine": describe(screener.engine),
        "backend": screener.backend,
        "threshold": screener.threshold,
        "ra_sdk": __version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _atomic_write(out / "run.json", json.dumps(info, indent=2, default=str) + "\n")


DICOM_MODES = ("none", "flagged", "all")


def run(
    studies_root: str | Path,
    out: str | Path,
    screener: Screener,
    *,
    workers: int = 2,
    resume: bool = True,
    save: bool = False,
    progress: bool | None = None,
    return_maps: bool = False,
    previews: bool = False,
    dicom: str = "none",
    on_result: Callable[[StudyResult], None] | None = None,
) -> tuple[RunSummary, list[dict[str, Any]]]:
    """The ``ra-sdk screen`` run. Returns (summary, rows sorted by score).

    ``previews`` writes ``previews/<study>.jpg`` for the HTML report; ``dicom`` ("flagged"
    or "all") writes a Secondary Capture and a SEG per DICOM study under ``dicom/``.
    Both are written before the study's journal line, so a resumed run never misses them.
    """
    from tqdm import tqdm

    if dicom not in DICOM_MODES:
        raise ConfigError(f"unknown DICOM output mode {dicom!r}; valid: {', '.join(DICOM_MODES)}")
    if dicom != "none":
        from ._optional import require

        require("highdicom", "DICOM outputs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, Path(studies_root), screener)
    cal = screener.engine.meta.calibration
    pix_thr = cal.pixel_threshold if cal else float("nan")
    journal_path = out / JOURNAL
    if not resume and journal_path.exists():
        journal_path.unlink()
    done = read_journal(journal_path)
    studies = discover(studies_root)
    todo = [s for s in studies if s.id not in done]
    t0 = time.perf_counter()
    n_images = 0
    # progress None: a bar on a terminal only (tqdm's disable=None), quiet logs otherwise
    bar = tqdm(total=len(studies), initial=len(studies) - len(todo), unit="study", desc="screening", disable=True if progress is False else (None if progress is None else False))
    with open(journal_path, "a", encoding="utf-8") as journal:
        last_sync = time.perf_counter()
        keep = save or return_maps or previews or dicom != "none"
        for i, r in screener.stream(todo, return_maps=keep, workers=workers):
            if r.error is None and r.maps is not None:
                if save:
                    save_maps(out, r, pix_thr)
                if previews:
                    write_preview(out, r, pix_thr)
                if todo[i].kind == "dicom" and (dicom == "all" or (dicom == "flagged" and r.flagged)):
                    try:
                        r.outputs = _write_dicom(out, todo[i], r, screener)
                    except RaSdkError as err:
                        r.notes.append(f"DICOM output failed: {err}")
                        log.warning("%s", err)
            row = r.row()
            journal.write(json.dumps(row) + "\n")
            journal.flush()  # in the OS after every study: a killed process loses nothing
            done[r.study] = row
            n_images += r.n_slices
            if on_result is not None:
                on_result(r)
            bar.update(1)
            if time.perf_counter() - last_sync > 1.0:  # and on disk every second (power loss)
                os.fsync(journal.fileno())
                last_sync = time.perf_counter()
        journal.flush()
        os.fsync(journal.fileno())
    bar.close()
    seconds = time.perf_counter() - t0
    rows = write_results(out, (done[s.id] for s in studies))
    failed = sum(1 for r in rows if r["error"])
    summary = RunSummary(len(studies), len(rows) - failed, failed, sum(1 for r in rows if r["flagged"]), len(studies) - len(todo), n_images, seconds)
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary, rows
