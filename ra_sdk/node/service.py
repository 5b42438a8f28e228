"""The node: receive (C-STORE into the spool), decide a study is complete, screen it, write
its row and SC + SEG, send them on; and start again after a crash without losing or
repeating anything.

    DIR/spool/                  instances as received (:mod:`ra_sdk.node.spool`)
    DIR/.ra-sdk-journal.jsonl   one line per screened study: its spool fingerprint and row
    DIR/.ra-sdk-sent.jsonl      the forwarded studies (:mod:`ra_sdk.node.forward`)
    DIR/results.csv/.jsonl, summary.json, run.json, dicom/<StudyInstanceUID>/{sc,seg}.dcm

Completion: a study is complete when none of its instances has arrived for ``study_idle``
seconds and no association that sent it instances is still open (the quiet-period rule
of the MONAI Deploy Informatics Gateway and of Orthanc's "stable study"). A study that
gets an instance after it was screened is screened again and its row replaced.

After a crash: every spool study whose fingerprint differs from its journal line (never
screened, or screened before more instances came) waits ``study_idle`` and is screened;
every journaled study with outputs not yet sent is sent. A study screened and journaled
is never screened again unless its instances change.

The worklist (results.csv/.jsonl, summary.json) is a view of the journal, rewritten whole
and sorted: at once when no other study is ready to screen, and while studies queue at most
every max(5 s, 10x the last rewrite's time). A node that has screened 100,000 studies takes
about a second per rewrite, so under a steady stream rewriting never takes more than ~10%
of it; the journal line of each study is written (and synced) before anything else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import results as res
from ..errors import ConfigError
from ..io import discover
from ..journal import JOURNAL, Journal, OutputLock, prepare_out
from ..results import RunSummary
from ..run import RUN_INFO, Outputs, settings_of, write_dicom_outputs, write_run_info
from .forward import Destination, Forwarder, Job
from .scp import Handlers, make_ae
from .spool import SPOOL, Spool

log = logging.getLogger("ra_sdk.node")
OWNED = ("dicom", SPOOL, res.RESULTS_CSV, res.RESULTS_JSONL, res.SUMMARY, RUN_INFO)
#: while studies queue, the worklist is rewritten at most every max(VIEW_INTERVAL seconds,
#: VIEW_COST_FACTOR x the last rewrite's duration); at once when none waits
VIEW_INTERVAL = 5.0
VIEW_COST_FACTOR = 10.0


@dataclass
class NodeConfig:
    out: Path
    port: int = 11112
    ae_title: str = "RASDK"
    host: str = ""
    allow: list[str] = field(default_factory=list)
    forward: Destination | None = None
    study_idle: float = 5.0
    max_instance_mb: int = 1024
    ssl_context: Any = None

    def __post_init__(self) -> None:
        if not 0 < len(self.ae_title) <= 16:
            raise ConfigError(f"AE title must have 1 to 16 characters, got {self.ae_title!r}")
        if self.study_idle < 0:
            raise ConfigError(f"--study-idle must be >= 0 seconds, got {self.study_idle}")
        if self.max_instance_mb < 1:
            raise ConfigError(f"--max-instance-mb must be at least 1, got {self.max_instance_mb}")


@dataclass
class _Study:
    last: float  # monotonic time of the last instance
    assocs: set[int] = field(default_factory=set)  # open associations that sent it instances
    version: int = 0  # instances received, ever (a change during screening keeps it pending)
    pending: bool = True


class Node:
    """A DICOM node around a :class:`~ra_sdk.screen.Screener`; ``start()``, then ``stop()``."""

    def __init__(self, config: NodeConfig, screener: Any, *, on_row: Callable[[str, dict[str, Any], float], None] | None = None):
        self.cfg, self.screener, self.on_row = config, screener, on_row
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.spool: Spool
        self._engine_sha = ""
        self._cv = threading.Condition()
        self._studies: dict[str, _Study] = {}
        self._assoc_studies: dict[int, set[str]] = {}
        self._assoc_counts: dict[int, int] = {}
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="ra-sdk-node-screen", daemon=True)
        self.server: Any = None
        self.forwarder: Forwarder | None = None
        self.rows: dict[str, tuple[str, dict[str, Any]]] = {}
        self.view_writes = 0  # worklist rewrites so far
        self._view_dirty, self._view_at, self._view_cost = False, 0.0, 0.0
        self._lock = OutputLock(self.out)
        self.journal = Journal(self.out / JOURNAL)

    # ---------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return int(self.server.server_address[1]) if self.server is not None else self.cfg.port

    def start(self) -> Node:
        self._lock.__enter__()
        settings = {**settings_of(self.screener, self.out / SPOOL, Outputs(dicom="all")), "node": True}
        self._engine_sha = settings["engine_sha256"]
        self.rows = prepare_out(self.out, settings, resume=True, owned=OWNED)
        if self.rows:  # a crash may have come between a journal line and the worklist
            self._write_view()
        self.spool = Spool(self.out)
        write_run_info(self.out, self.screener, settings)
        self.journal.open(settings)
        if self.cfg.forward is not None:
            self.forwarder = Forwarder(self.out, self.cfg.forward, self.cfg.ae_title)
            queued = self.forwarder.recover(self.rows)
            if queued:
                log.info("outbox: %d studies to send to %s", queued, self.cfg.forward)
            self.forwarder.start()
        now = time.monotonic()
        for uid in self.spool.studies():  # what a crash left unscreened
            if uid not in self.rows or self.rows[uid][0] != self.spool.fingerprint(uid):
                self._studies[uid] = _Study(last=now)
                log.info("study %s: in the spool, not screened yet; screening after %.1f s", uid, self.cfg.study_idle)
        handlers = Handlers(self._store, self._released, self.cfg.max_instance_mb << 20)
        ae = make_ae(self.cfg.ae_title, allow=self.cfg.allow)
        self.server = ae.start_server((self.cfg.host, self.cfg.port), block=False, evt_handlers=handlers.bind(), ssl_context=self.cfg.ssl_context)
        self._worker.start()
        log.info("listening on port %d as %s; results in %s", self.port, self.cfg.ae_title, self.out)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop accepting, finish the study being screened (the others stay in the spool
        for the next start), stop forwarding, close the journal."""
        if self.server is not None:
            self.server.shutdown()
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout)
        if self._view_dirty and not self._worker.is_alive():
            self._try_write_view()
        if self.forwarder is not None:
            self.forwarder.stop()
        self.journal.close()
        self._lock.__exit__()
        log.info("stopped")

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ receiving
    def _store(self, study_uid: str, sop_uid: str, data: bytes, assoc: int) -> None:
        self.spool.put(study_uid, sop_uid, data)
        with self._cv:
            now = time.monotonic()
            st = self._studies.get(study_uid)
            if st is None:
                st = self._studies[study_uid] = _Study(last=now)
            st.last, st.pending = now, True
            st.version += 1
            st.assocs.add(assoc)
            self._assoc_studies.setdefault(assoc, set()).add(study_uid)
            self._assoc_counts[assoc] = self._assoc_counts.get(assoc, 0) + 1

    def _released(self, assoc: int, aborted: bool, peer: str) -> None:
        with self._cv:
            uids = self._assoc_studies.pop(assoc, set())
            n = self._assoc_counts.pop(assoc, 0)
            for uid in uids:
                if uid in self._studies:
                    self._studies[uid].assocs.discard(assoc)
            self._cv.notify_all()
        log.info("association from %s %s: %d instances stored, studies %s", peer, "aborted" if aborted else "released", n, ", ".join(sorted(uids)) or "-")

    # ------------------------------------------------------------ screening
    def _next_ready(self) -> tuple[str, int] | None:
        """A complete study (its version), or None after waiting a little."""
        with self._cv:
            now = time.monotonic()
            ready = [(st.last, uid) for uid, st in self._studies.items() if st.pending and not st.assocs and now - st.last >= self.cfg.study_idle]
            if ready:
                uid = min(ready)[1]
                return uid, self._studies[uid].version
            waits = [self.cfg.study_idle - (now - st.last) for st in self._studies.values() if st.pending and not st.assocs]
            self._cv.wait(timeout=min([0.5, *[max(w, 0.005) for w in waits]]))
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            nxt = self._next_ready()
            if nxt is None:
                if self._view_dirty:  # nothing to screen: bring the worklist up to date
                    self._try_write_view()
                continue
            uid, version = nxt
            try:
                self._screen(uid)
            except OSError as err:  # the output folder stopped taking writes: stay pending
                log.error("study %s: cannot write results (%s); will retry", uid, err.strerror or err)
                self._stop.wait(5.0)
                continue
            except Exception:  # a bug, not bad input (the Screener turns that into a row)
                log.exception("study %s: screening failed; it stays in the spool for the next start", uid)
            with self._cv:
                st = self._studies.get(uid)
                if st is not None and st.version == version:
                    del self._studies[uid]  # nothing new arrived while it was screened

    def _view_due(self, current: str) -> bool:
        """Rewrite the worklist now: no other study is ready to screen, or the last rewrite
        is older than max(VIEW_INTERVAL, VIEW_COST_FACTOR x its own duration)."""
        now = time.monotonic()
        if now - self._view_at >= max(VIEW_INTERVAL, VIEW_COST_FACTOR * self._view_cost):
            return True
        with self._cv:
            return not any(uid != current and st.pending and not st.assocs and now - st.last >= self.cfg.study_idle for uid, st in self._studies.items())

    def _write_view(self) -> None:
        t = time.monotonic()
        rows = res.write_results(self.out, (r for _, r in self.rows.values()))
        res.write_summary(self.out, RunSummary.of(rows, resumed=0, images=sum(r.get("n_slices") or 0 for r in rows), seconds=0.0))
        self._view_at = time.monotonic()
        self._view_cost, self._view_dirty = self._view_at - t, False
        self.view_writes += 1

    def _try_write_view(self) -> None:
        try:
            self._write_view()
        except OSError as err:  # the journal has the rows; the next rewrite catches up
            log.error("cannot rewrite the worklist in %s (%s); will retry", self.out, err.strerror or err)
            self._view_at = time.monotonic()

    def _screen(self, uid: str) -> None:
        fp = self.spool.fingerprint(uid)
        files = self.spool.files(uid)
        log.info("study %s: screening %d instances", uid, len(files))
        series = discover(self.spool.folder(uid))
        results = [r for _, r in self.screener.stream(series, return_maps=True, workers=1)]
        scored = [r for r in results if r.score is not None]
        best = max(scored, key=lambda r: r.score or 0.0) if scored else results[0]
        best.study, best.paths = uid, [str(p) for p in files]
        if len(results) > 1:
            best.notes.append(f"{len(results)} series; this row is the highest-scoring one ({len(scored)} screened)")
        # SC + SEG; UIDs derived from the study's content, so a resend after a crash is the same instance
        write_dicom_outputs(self.out, self.out / "dicom" / uid, best, self.screener, uid_seed=f"{uid}|{fp}|{self._engine_sha}")
        row = best.row()
        self.journal.append(fp, row)
        self.journal.sync()
        self.rows[uid] = (fp, row)
        self._view_dirty = True
        if self._view_due(uid):
            self._write_view()
        with self._cv:
            st = self._studies.get(uid)
            latency = time.monotonic() - st.last if st else float("nan")
        if self.forwarder is not None and best.outputs:
            self.forwarder.put(Job(uid, fp, tuple(best.outputs)))
        score = "-" if best.score is None else f"{best.score:.4g}"
        log.info("study %s: %d instances, score %s, flagged %s, %s%.2f s after its last instance",
                 uid, len(files), score, best.flagged, f"error {best.error_kind}: {best.error}; " if best.error else "", latency)
        if self.on_row is not None:
            self.on_row(uid, row, latency)
