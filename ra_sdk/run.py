"""``ra-sdk screen``: a folder of studies screened into an output folder, resumable.

    OUT/.ra-sdk-journal.jsonl   the journal (:mod:`ra_sdk.journal`): settings, then a line
                                per finished study
    OUT/.ra-sdk.lock            one writer per OUT
    OUT/run.json                engine, settings, studies root (the report's header)
    OUT/results.csv/.jsonl, summary.json, and on request maps/, previews/, dicom/

A run killed at any point and started again skips the studies in the journal, but only
when the journal was written with the same settings (engine sha256, threshold, backend,
precision, studies root, output options, ra-sdk version) and the study's files are
unchanged (paths, sizes, modification times); otherwise it refuses in one line, or with
``resume=False`` starts afresh. A re-run never serves a row computed with other settings.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import results as res
from ._version import __version__
from .engine import Engine
from .errors import ConfigError, DicomOutputError, RaSdkError
from .io import Study, discover
from .io.files import atomic_write, fsync_dir
from .journal import JOURNAL, Journal, OutputLock, prepare_out
from .preprocess import Preset
from .results import RunSummary, StudyResult, safe_name
from .screen import Screener

log = logging.getLogger(__name__)

RUN_INFO = "run.json"
#: what a run writes into OUT (removed when a run starts afresh in a marked folder)
OWNED = ("maps", "previews", "dicom", res.RESULTS_CSV, res.RESULTS_JSONL, res.SUMMARY, RUN_INFO, "report.html")
DICOM_MODES = ("none", "flagged", "all")
#: write failures that stop a run cleanly (the journal keeps what is done)
_STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


class Screens(Protocol):
    """What a run needs of its screener: a local :class:`~ra_sdk.screen.Screener`, or
    :class:`ra_sdk.distributed.RayScreener` on a cluster."""

    engine: Engine
    preset: Preset
    threshold: float | None

    @property
    def backend(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def precision(self) -> str: ...
    def stream(self, items: Sequence[Any], *, return_maps: bool = ..., workers: int = ...) -> Iterator[tuple[int, StudyResult]]: ...


class OutputError(RaSdkError):
    """The output folder cannot take more (disk full, quota, read-only): the run stops,
    keeping every finished study in its journal."""


@dataclass(frozen=True)
class Outputs:
    """What a run writes besides its rows."""

    save_maps: bool = False
    previews: bool = False
    dicom: str = "none"

    def __post_init__(self) -> None:
        if self.dicom not in DICOM_MODES:
            raise ConfigError(f"unknown DICOM output mode {self.dicom!r}; valid: {', '.join(DICOM_MODES)}")

    @property
    def any(self) -> bool:
        return self.save_maps or self.previews or self.dicom != "none"


def settings_of(screener: Screens, studies_root: Path, outputs: Outputs) -> dict[str, Any]:
    """Everything a row depends on; a journal is reused only when all of it is equal."""
    from .engine import sha256_file

    return {
        "engine_sha256": sha256_file(screener.engine.path),
        "threshold": screener.threshold,
        "backend": screener.backend,
        "device": screener.device,
        "precision": screener.precision,
        "studies_root": str(Path(studies_root).resolve()),
        "save_maps": outputs.save_maps,
        "previews": outputs.previews,
        "dicom": outputs.dicom,
        "ra_sdk": __version__,
    }


def fingerprint(study: Study) -> str:
    """The study's files as they are now: paths, sizes, modification times."""
    parts = []
    for p in study.paths:
        try:
            st = os.stat(p)
            parts.append(f"{p}|{st.st_size}|{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p}|missing")
    return "\n".join(parts)


def write_run_info(out: Path, screener: Screens, settings: dict[str, Any]) -> None:
    """``run.json``: what the report header shows (engine, calibration, backend, threshold)."""
    from .engine import describe

    info = {
        "studies_root": settings["studies_root"],
        "engine": describe(screener.engine),
        "backend": screener.backend,
        "threshold": screener.threshold,
        "settings": settings,
        "ra_sdk": __version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write(out / RUN_INFO, json.dumps(info, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------- the run
def run(
    studies_root: str | Path,
    out: str | Path,
    screener: Screens,
    *,
    workers: int = 2,
    resume: bool = True,
    save: bool = False,
    previews: bool = False,
    dicom: str = "none",
    return_maps: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[StudyResult], None] | None = None,
) -> tuple[RunSummary, list[dict[str, Any]]]:
    """Screen every study under ``studies_root`` into ``out``; returns (summary, rows
    sorted by score).

    Args:
        save: ``maps/<study>.npy`` and an overlay PNG per study.
        previews: ``previews/<study>.jpg`` for the HTML report.
        dicom: "flagged" or "all": a Secondary Capture and a SEG per DICOM study.
        return_maps: keep maps, inputs and reconstructions on each result handed to
            ``on_result`` (the caller drops them to keep memory flat).
        on_start: called with (studies found, studies already done) before screening.
        on_result: called with each finished study (a progress display, a metric).
    Raises:
        OutputError: OUT stopped taking writes (disk full...); finished studies are kept.
    """
    outputs = Outputs(save, previews, dicom)
    if dicom != "none":
        from ._optional import require

        require("highdicom", "DICOM outputs")
    out = Path(out)
    studies_root = Path(studies_root)
    settings = settings_of(screener, studies_root, outputs)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out):
        done = prepare_out(out, settings, resume=resume, owned=OWNED)
        write_run_info(out, screener, settings)
        studies = discover(studies_root, exclude=[out])
        fps = {s.id: fingerprint(s) for s in studies}
        done = {k: v for k, v in done.items() if k in fps and v[0] == fps[k]}
        todo = [s for s in studies if s.id not in done]
        if on_start is not None:
            on_start(len(studies), len(studies) - len(todo))
        t0 = time.perf_counter()
        n_images = 0
        journal = Journal(out / JOURNAL)
        journal.open(settings)
        try:
            keep = return_maps or outputs.any
            for i, r in screener.stream(todo, return_maps=keep, workers=workers):
                if r.study in done:  # a repeat (a retried batch on a cluster): written once
                    log.debug("%s: already written in this run; repeat dropped", r.study)
                    continue
                try:
                    _write_outputs(out, todo[i], r, screener, outputs)
                    row = r.row()
                    journal.append(fps[r.study], row)
                except OSError as err:
                    raise _stopped(out, err, len(done)) from None
                done[r.study] = (fps[r.study], row)
                n_images += r.n_slices
                if on_result is not None:
                    on_result(r)
        finally:
            try:
                journal.close()
            except OSError as err:  # every line is already in the OS; only the last fsync failed
                log.debug("%s: journal not synced (%s)", out, err.strerror)
        seconds = time.perf_counter() - t0
        try:
            rows = res.write_results(out, (done[s.id][1] for s in studies))
            summary = RunSummary.of(rows, resumed=len(studies) - len(todo), images=n_images, seconds=seconds)
            res.write_summary(out, summary)
        except OSError as err:
            raise _stopped(out, err, len(done)) from None
    return summary, rows


def _stopped(out: Path, err: OSError, n_done: int) -> RaSdkError:
    if err.errno not in _STOP_ERRNOS:
        return RaSdkError(f"{out}: cannot write ({err.strerror or err}); {n_done} finished studies are kept; run the same command again to resume")
    return OutputError(f"{out}: {err.strerror or os.strerror(err.errno or 0)} while writing outputs; {n_done} finished studies are kept in the journal; free space and run the same command again to resume")


def _write_outputs(out: Path, study: Study, r: StudyResult, screener: Screens, outputs: Outputs) -> None:
    """Maps, previews and DICOM objects of one study, before its journal line (so a resumed
    run never misses them). A failing DICOM object becomes a note; a full disk stops the run."""
    from .report.previews import save_maps, write_preview

    if r.error is not None or r.maps is None:
        return
    cal = screener.engine.meta.calibration
    pix_thr = cal.pixel_threshold if cal else float("nan")
    if outputs.save_maps:
        save_maps(out, r, pix_thr)
    if outputs.previews:
        write_preview(out, r, pix_thr)
    if study.kind == "dicom" and (outputs.dicom == "all" or (outputs.dicom == "flagged" and r.flagged)):
        write_dicom_outputs(out, out / "dicom" / safe_name(r.study), r, screener)


def write_dicom_outputs(out: Path, folder: Path, r: StudyResult, screener: Screens, *, uid_seed: str | None = None) -> None:
    """SC + SEG of one screened DICOM study (kept maps and headers) into ``folder`` inside
    OUT; sets ``r.outputs`` (paths relative to OUT). A failing object becomes a note on the
    study; a full disk raises. ``uid_seed``: derive the new UIDs from it (see
    :func:`ra_sdk.report.dicom.write_study_outputs`)."""
    from .report.dicom import write_study_outputs

    if r.error is not None or r.maps is None or r.slices is None or r.max_slice is None:
        return
    cal = screener.engine.meta.calibration
    try:
        files = write_study_outputs(
            r.headers or [], r.maps, r.slices, r.max_slice, screener.preset, cal.pixel_threshold if cal else float("nan"),
            folder, score=r.score, percentile=r.percentile, apply_voi=screener.preset.apply_voi, boxes=r.boxes, uid_seed=uid_seed,
        )
        r.outputs = [f.relative_to(out).as_posix() for f in files]
        fsync_dir(folder)
    except DicomOutputError as err:
        r.notes.append(f"DICOM output failed: {err}")
        log.warning("%s: %s", r.study, err)


def make_missing_previews(run_dir: Path, top: int, *, on_start: Callable[[int], None] | None = None, on_result: Callable[[StudyResult], None] | None = None) -> int:
    """Previews of the ``top`` highest-scoring studies of a finished run that have none,
    re-scored with the run's engine (the step ``ra-sdk report`` runs before writing the
    page). Returns how many were made; 0 when the engine or the studies are gone."""
    from .report.previews import preview_path, write_preview

    run_dir = Path(run_dir)
    rows = res.read_rows(run_dir)
    info = res.read_json(run_dir / RUN_INFO) or {}
    want = [r["study"] for r in rows[:top] if r.get("score") is not None and not preview_path(run_dir, r["study"]).exists()]
    root = info.get("studies_root")
    if not want or not root or not Path(root).exists():
        return 0
    engine_file = (info.get("engine") or {}).get("file")
    if not engine_file or not Path(engine_file).is_file():
        log.warning("engine %s is gone; %d studies will have no preview", engine_file, len(want))
        return 0
    by_id = {s.id: s for s in discover(root, exclude=[run_dir])}
    studies = [by_id[w] for w in want if w in by_id]
    if on_start is not None:
        on_start(len(studies))
    made = 0
    with Screener(engine_file, threshold=info.get("threshold")) as screener:
        cal = screener.engine.meta.calibration
        pix_thr = cal.pixel_threshold if cal else float("nan")
        for _, r in screener.stream(studies, return_maps=True):
            if r.error is None:
                write_preview(run_dir, r, pix_thr)
                made += 1
            if on_result is not None:
                on_result(r)
    return made
