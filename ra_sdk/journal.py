"""The journal of a screening run, and the lock that keeps one writer per output folder.

    OUT/.ra-sdk-journal.jsonl   append-only: a header with the settings that produced it,
                                then one line per finished study, its files' fingerprint
                                and its row (flushed per study, fsync'd every second and at
                                the end; a torn last line is ignored, and cut off before
                                the next append)
    OUT/.ra-sdk.lock            an advisory lock held for the run, released by the OS when
                                the process ends, however it ends
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import RaSdkError
from .io.discovery import OUT_MARKER
from .io.files import atomic_write

JOURNAL = ".ra-sdk-journal.jsonl"
JOURNAL_FORMAT = "ra-sdk-journal/2"
LOCK = ".ra-sdk.lock"


class Journal:
    """The append-only journal of one run (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self._last_sync = 0.0

    def read(self) -> tuple[dict[str, Any] | None, dict[str, tuple[str, dict[str, Any]]]]:
        """(header settings or None, study id -> (fingerprint, row)); a torn last line (a
        kill mid-write) is ignored."""
        header: dict[str, Any] | None = None
        rows: dict[str, tuple[str, dict[str, Any]]] = {}
        if not self.path.exists():
            return None, rows
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(entry, dict):
                    continue
                if entry.get("journal") == JOURNAL_FORMAT and isinstance(entry.get("settings"), dict):
                    header = entry["settings"]
                elif isinstance(entry.get("row"), dict) and isinstance(entry["row"].get("study"), str):
                    rows[entry["row"]["study"]] = (str(entry.get("fingerprint", "")), entry["row"])
        return header, rows

    def open(self, settings: dict[str, Any]) -> None:
        """Open for appending; a new journal starts with its settings header. A torn tail
        (no final newline) is cut off first, so it cannot swallow the next line."""
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            with open(self.path, "rb+") as fh:
                data = fh.read()
                if not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            self._append({"journal": JOURNAL_FORMAT, "settings": settings})
            self.sync()

    def _append(self, entry: dict[str, Any]) -> None:
        """One line, written straight to the OS (no buffer to flush later): a killed process
        loses nothing, and a failing write is cut back so no half line remains."""
        assert self.fd is not None
        view = memoryview((json.dumps(entry) + "\n").encode("utf-8"))
        pos = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            try:
                os.ftruncate(self.fd, pos)
            except OSError:
                pass
            raise

    def append(self, fp: str, row: dict[str, Any]) -> None:
        self._append({"fingerprint": fp, "row": row})
        if time.perf_counter() - self._last_sync > 1.0:  # and on disk every second (power loss)
            self.sync()

    def sync(self) -> None:
        assert self.fd is not None
        os.fsync(self.fd)
        self._last_sync = time.perf_counter()

    def close(self) -> None:
        if self.fd is not None:
            try:
                self.sync()
            finally:
                os.close(self.fd)
                self.fd = None


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Finished rows by study id (for tools and tests)."""
    return {k: row for k, (_, row) in Journal(Path(path)).read()[1].items()}


class OutputLock:
    """One writer per output folder: an advisory lock held for the run (POSIX flock;
    released by the OS when the process ends, however it ends)."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            raise RaSdkError(f"{self.path.parent}: another ra-sdk run (pid {holder}) is writing into this folder; wait for it or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
    def short(v: Any) -> str:
        s = str(v)
        return s[:12] + "..." if len(s) > 40 else s
    return ", ".join(f"{k} {short(old.get(k))} -> {short(new.get(k))}" for k in keys[:4])


def _start_fresh(out: Path, owned: tuple[str, ...]) -> None:
    """Remove what an earlier run wrote into a marked output folder."""
    for name in (JOURNAL, *owned):
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def prepare_out(out: Path, settings: dict[str, Any], *, resume: bool, owned: tuple[str, ...] = ()) -> dict[str, tuple[str, dict[str, Any]]]:
    """Make OUT ready for a run with ``settings``; returns the reusable journal rows.

    A journal with other settings (or from an older ra-sdk) is refused unless ``resume`` is
    False, which starts afresh and removes the ``owned`` outputs of the earlier run. A
    folder holding such files but no ra-sdk marker is not ours to overwrite.
    """
    out.mkdir(parents=True, exist_ok=True)
    marked = (out / OUT_MARKER).exists()
    journal = Journal(out / JOURNAL)
    header, rows = journal.read()
    if not marked and any((out / n).exists() for n in (JOURNAL, *owned)):
        raise RaSdkError(f"{out}: holds results not written by this ra-sdk (no {OUT_MARKER} marker); choose another --out")
    if resume and (out / JOURNAL).exists() and header != settings:
        if header is None:
            why = "its journal is from an older ra-sdk or damaged"
        else:
            why = f"it was screened with other settings ({_describe_difference(header, settings)})"
        raise RaSdkError(f"{out}: {why}; rerun with --no-resume to screen afresh into it, or choose another --out")
    if not resume and marked:
        _start_fresh(out, owned)
        rows = {}
    atomic_write(out / OUT_MARKER, "This folder holds ra-sdk screening outputs; ra-sdk never screens files inside it.\n")
    return rows
