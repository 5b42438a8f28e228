"""Observers of a training run: the trainer calls them, they report (a CSV + JSONL log by
default; a progress display or an experiment tracker is a callback the caller adds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Callback:
    """Hooks the trainer calls; override what you need."""

    def on_start(self, total_steps: int, step: int) -> None: ...

    def on_end(self, summary: dict[str, Any]) -> None: ...

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


class CSVLogger(Callback):
    """Appends step metrics to ``log.csv`` and epoch metrics to ``epochs.jsonl``."""

    def __init__(self, out: Path, every: int = 10):
        self.out, self.every = Path(out), every
        self._header: list[str] | None = None

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step % self.every:
            return
        path = self.out / "log.csv"
        keys = ["step", *sorted(metrics)]
        if self._header is None:
            self._header = keys
            if not path.exists():
                path.write_text(",".join(keys) + "\n")
        with open(path, "a") as fh:
            fh.write(",".join(str(step) if k == "step" else f"{metrics.get(k, float('nan')):.6g}" for k in self._header) + "\n")

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        with open(self.out / "epochs.jsonl", "a") as fh:
            fh.write(json.dumps({"epoch": epoch, **metrics}) + "\n")
