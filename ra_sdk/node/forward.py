"""Sending each screened study's Secondary Capture and SEG on (C-STORE SCU), with an
outbox that survives restarts.

The outbox is not a second copy of anything: it is every study whose journal row lists
outputs and whose (study, fingerprint, destination) is not yet in ``.ra-sdk-sent.jsonl``.
A send that fails is retried with exponential back-off (1 s doubling to 60 s) for as long
as the node runs, and again after a restart. A study is marked sent only when the
destination answered success for every object; a crash between that answer and the mark
sends the objects once more, with the same SOP Instance UIDs (they are derived from the
study's content), which a receiver stores as the same instances.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("ra_sdk.node")
SENT = ".ra-sdk-sent.jsonl"
SC_STORAGE, SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.66.4"
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class Destination:
    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """HOST:PORT:AET"""
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not (0 < int(parts[1]) < 65536) or not (0 < len(parts[2]) <= 16):
            raise ConfigError(f"--forward takes HOST:PORT:AE_TITLE (AE title of 1 to 16 characters), got {text!r}")
        return cls(parts[0], int(parts[1]), parts[2])

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.ae_title}"


@dataclass(frozen=True)
class Job:
    study: str
    fingerprint: str
    files: tuple[str, ...]  # relative to OUT


class Forwarder:
    """A thread that sends outbox jobs in order; ``put`` a job after its journal line."""

    def __init__(self, out: Path, dest: Destination, ae_title: str):
        self.out, self.dest, self.ae_title = Path(out), dest, ae_title
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.stop_event = threading.Event()
        self.sent_path = self.out / SENT
        self.thread = threading.Thread(target=self._loop, name="ra-sdk-forward", daemon=True)

    def sent(self) -> set[tuple[str, str, str]]:
        done: set[tuple[str, str, str]] = set()
        if self.sent_path.exists():
            for line in self.sent_path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    e = json.loads(line)
                    done.add((e["study"], e["fingerprint"], e["destination"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line
        return done

    def recover(self, rows: dict[str, tuple[str, dict[str, Any]]]) -> int:
        """Queue every journaled study with outputs not yet sent to this destination."""
        done = self.sent()
        n = 0
        for study, (fp, row) in rows.items():
            files = [f for f in (row.get("outputs") or []) if (self.out / f).is_file()]
            if files and (study, fp, str(self.dest)) not in done:
                self.put(Job(study, fp, tuple(files)))
                n += 1
        return n

    def put(self, job: Job) -> None:
        self.jobs.put(job)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.jobs.put(None)
        self.thread.join(timeout)

    def _loop(self) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            job = self.jobs.get()
            if job is None:
                return
            while not self.stop_event.is_set():
                err = self._send(job)
                if err is None:
                    self._mark(job)
                    backoff = 1.0
                    break
                log.warning("forward of study %s to %s failed (%s); retry in %.0f s", job.study, self.dest, err, backoff)
                if self.stop_event.wait(backoff):
                    return
                backoff = min(2 * backoff, MAX_BACKOFF_S)

    def _send(self, job: Job) -> str | None:
        """None when every object was stored, else the reason."""
        from pydicom import dcmread
        from pynetdicom import AE

        ae = AE(ae_title=self.ae_title)
        for uid in (SC_STORAGE, SEG_STORAGE):
            ae.add_requested_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        assoc = ae.associate(self.dest.host, self.dest.port, ae_title=self.dest.ae_title)
        if not assoc.is_established:
            return "association rejected or no answer"
        try:
            for rel in job.files:
                status = assoc.send_c_store(dcmread(self.out / rel))
                code = getattr(status, "Status", None)
                if code is None:
                    return f"no answer for {rel}"
                if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success or warning
                    return f"status 0x{code:04X} for {rel}"
        except (OSError, ValueError, RuntimeError) as err:
            return f"{type(err).__name__}: {err}"
        finally:
            if assoc.is_established:
                assoc.release()
        log.info("forwarded study %s (%d objects) to %s", job.study, len(job.files), self.dest)
        return None

    def _mark(self, job: Job) -> None:
        line = json.dumps({"study": job.study, "fingerprint": job.fingerprint, "destination": str(self.dest), "at": time.time()}) + "\n"
        fd = os.open(self.sent_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
