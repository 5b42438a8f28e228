"""Screening results: the row schema, its order, and the files that hold it.

One room for what a screening run produces, read by the report, written by ``ra-sdk
screen``, the distributed run and the DICOM node alike:

    results.jsonl / results.csv   one row per study (:data:`COLUMNS`), sorted by score
    summary.json                  :class:`RunSummary`

Rows are plain dicts (JSON types); :class:`StudyResult` makes them. Files are written
atomically (:func:`ra_sdk.io.files.atomic_write`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RaSdkError
from .io.files import atomic_write

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
SUMMARY = "summary.json"

#: the columns of results.csv, in order (results.jsonl rows may add ``outputs``)
COLUMNS = ("study", "score", "percentile", "flagged", "max_slice", "n_slices", "error", "error_kind", "notes", "paths")


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
    headers: list[Any] | None = None  # DICOM studies: one dataset per file, pixel data dropped, on request
    boxes: list[Any] | None = None  # each screened slice's crop box on its source image, on request

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

    @classmethod
    def of(cls, rows: list[dict[str, Any]], *, resumed: int, images: int, seconds: float) -> RunSummary:
        failed = sum(1 for r in rows if r["error"])
        return cls(len(rows), len(rows) - failed, failed, sum(1 for r in rows if r["flagged"]), resumed, images, seconds)

    def line(self) -> str:
        return (f"{self.studies} studies: {self.screened} screened, {self.flagged} flagged, {self.failed} failed"
                f"{f', {self.skipped_resumed} already done' if self.skipped_resumed else ''}; "
                f"{self.images} images in {self.seconds:.1f} s ({self.images_per_s:.1f} images/s)")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "images_per_s": self.images_per_s}


def sort_key(row: dict[str, Any]) -> tuple[bool, float, str]:
    """Highest score first, failures last, ties by study id."""
    score = row.get("score")
    return (score is None, -(score or 0.0), row["study"])


def safe_name(study_id: str) -> str:
    """A file name for a study id that cannot leave the output folder (and stays unique:
    a hash of the id follows the readable part)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", study_id).strip("._")[:80] or "study"
    return f"{base}-{hashlib.sha1(study_id.encode()).hexdigest()[:8]}"


def write_results(out: Path, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """results.jsonl and results.csv, sorted by :func:`sort_key`; returns the sorted rows."""
    ordered = sorted(rows, key=sort_key)
    atomic_write(out / RESULTS_JSONL, "".join(json.dumps(r) + "\n" for r in ordered))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in ordered:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    atomic_write(out / RESULTS_CSV, buf.getvalue())
    return ordered


def write_summary(out: Path, summary: RunSummary) -> None:
    atomic_write(out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """A run's rows from its results.jsonl, in :func:`sort_key` order."""
    path = Path(run_dir) / RESULTS_JSONL
    if not path.exists():
        raise RaSdkError(f"{run_dir}: no {RESULTS_JSONL}; is this a 'ra-sdk screen --out' folder?")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise RaSdkError(f"{path}: line {n} is not valid JSON") from None
                if not isinstance(row, dict) or not isinstance(row.get("study"), str):
                    raise RaSdkError(f"{path}: line {n} is not a result row")
                rows.append(row)
    rows.sort(key=sort_key)
    return rows


def read_json(path: Path) -> Any:
    """A JSON file of a run folder (summary.json, run.json), or None when it is absent."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RaSdkError(f"{path}: not valid JSON ({err})") from None
