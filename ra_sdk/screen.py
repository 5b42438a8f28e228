"""The embeddable :class:`Screener`: an engine, its runners and its preset, screening
studies, files or arrays.

    screener = ra_sdk.load()                     # the bundled demo engine, backend/device "auto"
    results = screener.screen(["a.dcm", "vol.nii.gz", array])
    r = screener.screen_one(image)               # low-latency path for one 2-D image

Inside, screening is a pipeline: decode + preprocessing in worker threads, or worker
processes with ``decode="processes"`` (a bounded window of studies in flight), batching of
slices across studies, the engine and the score (:class:`ra_sdk.scorer.Scorer`). Bad input never raises: it becomes a result with
``error`` and ``error_kind`` set. The batch run over a folder, with its journal and
resume, is :mod:`ra_sdk.run`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .engine import Engine, read_engine
from .errors import ConfigError, RaSdkError, ReadError
from .io import Study, read_study, study_for_path
from .preprocess import Preset, modality_note, prepare_stack
from .results import StudyResult
from .scorer import Scorer
from .scoring import study_score

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One study decoded and preprocessed for a preset, ready for the engine (or its error)."""

    study: Study | None
    sid: str
    paths: list[str]
    images: np.ndarray | None = None
    slice_index: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    decode_s: float = 0.0
    headers: list[Any] | None = None  # DICOM: the files' datasets without pixel data
    boxes: list[Any] | None = None  # each screened slice's crop box (presets that crop borders)

    @property
    def where(self) -> str:
        """What an error line names: the study's first file, else its id."""
        return self.paths[0] if self.paths else self.sid


def one_line(text: str, limit: int = 500) -> str:
    """A reason as one line: whitespace (newlines included) collapsed, length capped."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def prepare(item: Any, preset: Preset, index: int = 0, *, max_bytes: int) -> Prepared:
    """Decode and preprocess one item (path, Study or array) for ``preset``; needs no
    engine, so it runs wherever the data is (a decode thread, a Ray task). Never raises
    for bad input: whatever a reader raises becomes the item's error, in one line.
    ``max_bytes``: the study's decode budget, checked from headers before decoding."""
    t = time.perf_counter()
    p = _blank(item, index)
    if isinstance(item, np.ndarray):
        try:
            arr = np.asarray(item, np.float32)
            if arr.ndim == 2:
                arr = arr[None]
            if arr.ndim != 3 or min(arr.shape) < 1:
                raise ValueError(f"expected a (H, W) or (N, H, W) array, got shape {item.shape}")
            stack = prepare_stack(arr, preset, where=p.sid)
            p.images, p.slice_index, p.boxes = stack.images, stack.indices, stack.boxes
            p.notes += stack.notes
        except ReadError as err:
            p.error, p.error_kind = err.reason, err.kind
        except (ValueError, TypeError) as err:
            p.error, p.error_kind = str(err), "bad-array"
    else:
        try:
            study = p.study or study_for_path(item)
            sl = read_study(study, apply_voi=preset.apply_voi, max_bytes=max_bytes)
            p.notes = list(sl.notes)
            p.headers = sl.meta.get("headers")
            mismatch = modality_note(sl.meta.get("Modality"), study.kind, preset)
            if mismatch:
                p.notes.append(mismatch)
            stack = prepare_stack(sl.pixels, preset, where=p.where)
            p.images, p.slice_index, p.boxes = stack.images, stack.indices, stack.boxes
            p.notes += stack.notes
        except ReadError as err:
            p.error, p.error_kind = str(err), err.kind
        except RaSdkError as err:
            p.error, p.error_kind = str(err), "error"
        except Exception as err:
            p.error, p.error_kind = f"{p.where}: {type(err).__name__}: {err}", "unreadable"
            log.debug("reader failure on %s", p.where, exc_info=True)
    if p.error is not None:
        p.error = one_line(p.error)
        p.images = p.slice_index = None
    p.decode_s = time.perf_counter() - t
    return p


def _blank(item: Any, index: int) -> Prepared:
    """The :class:`Prepared` of ``item`` before decoding: its id and paths."""
    if isinstance(item, np.ndarray):
        return Prepared(None, f"array-{index}", [])
    if isinstance(item, Study):
        return Prepared(item, item.id, [str(x) for x in item.paths])
    try:
        return Prepared(None, Path(item).name, [str(item)])
    except TypeError:  # not a path: prepare() reports it
        return Prepared(None, f"item-{index}", [])


#: where studies are decoded: "threads" of the screening process, or worker "processes"
DECODE_MODES = ("threads", "processes")


def _decode_process_init() -> None:
    """A decode process: Ctrl-C is the parent's to handle (it stops the pool), and one
    OpenCV thread per process (the processes are the parallelism)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - a dependency of ra-sdk
        pass


class _ThreadDecoder:
    """:func:`prepare` in ``workers`` threads of this process (the default)."""

    def __init__(self, workers: int, preset: Preset):
        self.preset = preset
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ra-sdk-decode")

    def submit(self, item: Any, index: int, max_bytes: int) -> Future[Prepared]:
        return self.pool.submit(prepare, item, self.preset, index, max_bytes=max_bytes)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class _ProcessDecoder:
    """:func:`prepare` in ``workers`` spawned processes: decoding (pydicom, nibabel, the
    readers' Python) then runs beside the scoring process instead of sharing its GIL. Spawned,
    not forked: a child holds no engine, no CUDA context and no thread of the parent.

    A process that dies while decoding (a crash in a codec) breaks the whole pool, and every
    study in flight fails with it. Each of those is then decoded again alone, in a process of
    its own, ``workers`` at a time: the one that kills its process again is the culprit and
    becomes a ``decoder-crash`` row; the others give their results. Then a fresh pool goes on.
    """

    def __init__(self, workers: int, preset: Preset):
        import multiprocessing

        self.workers, self.preset = max(1, workers), preset
        self.ctx = multiprocessing.get_context("spawn")
        self.pool = self._pool(self.workers)

    def _pool(self, n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n, mp_context=self.ctx, initializer=_decode_process_init)

    def submit(self, item: Any, index: int, max_bytes: int) -> Future[Prepared]:
        try:
            return self.pool.submit(prepare, item, self.preset, index, max_bytes=max_bytes)
        except BrokenProcessPool as err:  # broken since the last look: recovered with the others
            fut: Future[Prepared] = Future()
            fut.set_exception(err)
            return fut

    def alone(self, item: Any, index: int, max_bytes: int) -> Prepared:
        """Decode ``item`` in a process of its own; a ``decoder-crash`` failure if it dies."""
        with self._pool(1) as one:
            try:
                return one.submit(prepare, item, self.preset, index, max_bytes=max_bytes).result()
            except BrokenProcessPool:
                p = _blank(item, index)
                p.error = f"{p.where}: reading it killed the decode process, again when read alone (a crash in a codec or reader)"
                p.error_kind = "decoder-crash"
                return p

    def recover(self, broken: list[tuple[Any, int, int]]) -> list[Prepared]:
        """Each (item, index, max_bytes) of the broken pool decoded again alone, ``workers``
        at a time; a fresh pool for what comes next."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.warning("a decode process died; decoding the %d studies in flight again one by one", len(broken))
        with ThreadPoolExecutor(self.workers) as each:
            out = list(each.map(lambda b: self.alone(*b), broken))
        self.pool = self._pool(self.workers)
        return out

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Screener:
    """An engine, its runners and its preset: screens studies, files or arrays.

    Safe to call from several threads (the runners serialise engine calls); warms up once
    at construction; holds no per-study state between calls.
    """

    def __init__(self, engine: str | Path | Engine | None = None, *, backend: str = "auto", device: str = "auto", batch_size: int = 32, threshold: float | None = None, precision: str = "auto", memory_budget_mb: int | None = None, threads: int = 0,
                 decode: str = "threads"):
        """``precision``: "auto" (int8 on a VNNI CPU where the engine's int8 networks passed
        their fidelity bar, else fp32), "fp32", "fp16" or "int8". ``memory_budget_mb``:
        decoded pixels the decode threads may hold together (default 4096); a study above
        its share (budget / workers) is refused before decoding. ``threads``: ONNX Runtime
        threads per network (0: one per core). ``decode``: where :meth:`stream` decodes
        studies, "threads" or "processes" (spawned worker processes: for hosts whose cores
        are not busy with the engine, a GPU host; a script that uses them needs the
        ``if __name__ == "__main__":`` guard, as every spawned process does)."""
        from .data import DEMO_ENGINE
        from .io.limits import DEFAULT_BUDGET_BYTES

        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if decode not in DECODE_MODES:
            raise ConfigError(f"decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}")
        self.decode = decode
        if threshold is not None and not np.isfinite(threshold):
            raise ConfigError(f"threshold must be a finite number, got {threshold}")
        self.memory_budget = DEFAULT_BUDGET_BYTES if memory_budget_mb is None else int(memory_budget_mb) << 20
        self.engine = engine if isinstance(engine, Engine) else read_engine(engine or DEMO_ENGINE)
        self.preset = self.engine.meta.preset
        cal = self.engine.meta.calibration
        self.threshold = threshold if threshold is not None else (cal.threshold if cal else None)
        self._local = threading.local()
        self.scorer = Scorer(self.engine, backend=backend, device=device, precision=precision, batch_size=batch_size, threads=threads)
        self.batch_size = self.scorer.batch_size
        size = self.preset.size
        self.scorer.score(np.zeros((1, size, size), np.float32), maps=False, recons=False)  # warm-up: sessions, kernels, graphs

    @property
    def backend(self) -> str:
        return self.scorer.recon.name

    @property
    def device(self) -> str:
        return self.scorer.recon.device

    @property
    def precision(self) -> str:
        return self.scorer.recon.precision

    @property
    def calibrated(self) -> bool:
        return self.engine.meta.calibration is not None

    # ------------------------------------------------------------ preparation
    def prepare(self, item: Any, index: int = 0, *, max_bytes: int | None = None) -> Prepared:
        """Decode and preprocess one item for this engine's preset (:func:`prepare`)."""
        return prepare(item, self.preset, index, max_bytes=max_bytes or self.memory_budget)

    # --------------------------------------------------------------- scoring
    def _finish(self, p: Prepared, scores: np.ndarray | None, maps: np.ndarray | None, recons: np.ndarray | None, keep: bool, infer_s: float) -> StudyResult:
        r = StudyResult(p.sid, p.paths, notes=p.notes, timings={"decode_s": p.decode_s, "score_s": infer_s})
        if p.error is not None or scores is None or p.images is None or p.slice_index is None:
            r.error, r.error_kind = p.error or "no image", p.error_kind or "error"
            return r
        cfg = self.engine.meta.score
        if not np.isfinite(scores).all():  # never a NaN or inf in the results: a failure with its reason
            bad = int((~np.isfinite(scores)).sum())
            r.error, r.error_kind = f"{p.where}: the score of {bad} of {len(scores)} slice(s) is not finite (NaN or inf from the engine)", "non-finite"
            return r
        s, k = study_score(scores, how=cfg.study_aggregation, k=cfg.study_k)
        r.score, r.n_slices, r.max_slice = s, len(scores), int(p.slice_index[k])
        cal = self.engine.meta.calibration
        r.percentile = cal.percentile_of(s) if cal else None
        r.flagged = None if self.threshold is None else bool(s > self.threshold)
        if keep:
            r.maps, r.images, r.recons, r.slices, r.headers, r.boxes = maps, p.images, recons, p.slice_index, p.headers, p.boxes
        return r

    def screen_one(self, image: np.ndarray, *, return_maps: bool = False) -> StudyResult:
        """The low-latency path: one 2-D image (or a small stack) in, one result out.

        Runs in the calling thread (no thread pool, nothing started per call), reuses this
        thread's input buffer, and is safe to call from several threads at once (each
        thread has its own buffer; the runners serialise engine calls)."""
        p = prepare(image, self.preset, 0, max_bytes=self.memory_budget)
        return next(self.score_prepared([(0, p)], return_maps=return_maps))[1]

    def _input_buffer(self, n: int, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's (n, H, W) float32 input buffer, allocated once per thread and shape."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] < n or buf.shape[1:] != shape:
            buf = self._local.buf = np.empty((max(n, self.batch_size), *shape), np.float32)
        return buf[:n]

    def screen(self, items: Sequence[Any] | Iterable[Any], *, return_maps: bool = False, workers: int = 2) -> list[StudyResult]:
        """Screen paths, Studies or arrays; one result per item, in order."""
        items = list(items)
        out: dict[int, StudyResult] = {}
        for idx, r in self.stream(items, return_maps=return_maps, workers=workers):
            out[idx] = r
        return [out[i] for i in range(len(items))]

    def stream(self, items: Sequence[Any], *, return_maps: bool = False, workers: int = 2, window: int | None = None) -> Iterator[tuple[int, StudyResult]]:
        """Pipeline over ``items``: decode in ``workers`` threads or processes (``decode``; at
        most ``window`` studies in flight), batch slices across studies, score; yields
        (index, result) as studies finish."""
        from .io.limits import study_budget

        window = window or max(4 * workers, 2 * self.batch_size)
        share = study_budget(self.memory_budget, workers)
        decoder = (_ProcessDecoder if self.decode == "processes" else _ThreadDecoder)(workers, self.preset)
        pending: deque[tuple[int, Any, Future[Prepared]]] = deque()
        it = iter(enumerate(items))

        def refill() -> None:
            while len(pending) < window:
                try:
                    i, item = next(it)
                except StopIteration:
                    return
                pending.append((i, item, decoder.submit(item, i, share)))

        def recover() -> None:
            """After a decode process died: every study of the broken pool, again, alone."""
            assert isinstance(decoder, _ProcessDecoder)  # only a process pool breaks
            wait([f for _, _, f in pending])  # the broken pool fails each of its futures
            broken = [(k, item) for k, (_, item, f) in enumerate(pending) if isinstance(f.exception(), BrokenProcessPool)]
            redone = decoder.recover([(item, pending[k][0], share) for k, item in broken])
            for (k, item), p in zip(broken, redone, strict=True):
                done: Future[Prepared] = Future()
                done.set_result(p)
                pending[k] = (pending[k][0], item, done)

        def decoded() -> Iterator[tuple[int, Prepared]]:
            refill()
            while pending:
                fut = pending[0][2]
                try:
                    p = fut.result()
                except BrokenProcessPool:
                    recover()
                    p = pending[0][2].result()
                except Exception as err:  # a result that could not come back from its process
                    p = _blank(pending[0][1], pending[0][0])
                    p.error, p.error_kind = one_line(f"{p.where}: {type(err).__name__}: {err}"), "error"
                i = pending.popleft()[0]
                refill()
                yield i, p

        try:
            yield from self.score_prepared(decoded(), return_maps=return_maps)
        finally:
            decoder.shutdown()

    def score_prepared(self, prepared: Iterable[tuple[int, Prepared]], *, return_maps: bool = False) -> Iterator[tuple[int, StudyResult]]:
        """Score decoded studies (from :meth:`prepare`, here or in another process), slices
        batched across studies; yields (index, result) as studies finish."""
        source = iter(prepared)
        exhausted = False
        # Slices waiting for the engine, and per-study accumulators.
        queue: list[tuple[int, int]] = []  # (study slot, slice number)
        slots: dict[int, dict[str, Any]] = {}
        while not exhausted or queue:
            # Take decoded studies in order until a batch is full (or nothing is left).
            while not exhausted and len(queue) < self.batch_size:
                try:
                    i, p = next(source)
                except StopIteration:
                    exhausted = True
                    break
                if p.error is not None or p.images is None or len(p.images) == 0:
                    yield i, self._finish(p, None, None, None, False, 0.0)
                    continue
                n = len(p.images)
                slots[i] = {"p": p, "scores": np.empty(n), "maps": [None] * n, "recons": [None] * n, "left": n, "t": 0.0}
                queue.extend((i, k) for k in range(n))
            if not queue:
                continue
            batch, queue = queue[: self.batch_size], queue[self.batch_size :]
            x = self._input_buffer(len(batch), slots[batch[0][0]]["p"].images.shape[1:])
            for j, (i, k) in enumerate(batch):
                x[j] = slots[i]["p"].images[k]
            t = time.perf_counter()
            maps, scores, recons = self.scorer.score(x, maps=return_maps, recons=return_maps)
            dt = (time.perf_counter() - t) / len(batch)
            done = []
            for j, (i, k) in enumerate(batch):
                sl = slots[i]
                sl["scores"][k] = scores[j]
                if maps is not None and recons is not None:
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

    def close(self) -> None:
        self.scorer.close()

    def __enter__(self) -> Screener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(engine_path: str | Path | Engine | None = None, backend: str = "auto", device: str = "auto", **kw: Any) -> Screener:
    """The front door: a warmed-up :class:`Screener` (None = the bundled demo engine)."""
    return Screener(engine_path, backend=backend, device=device, **kw)
