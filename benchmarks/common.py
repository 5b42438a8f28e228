"""One timing method for every benchmark (STYLE.md item 13), shared with ``ra-sdk bench``:
warm-up calls first, then repeated timed calls with the device synchronised inside the
timed region; median, p10/p90/p99, min, max. Machine, versions and commit in every JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ra_sdk.bench import machine, timeit

__all__ = ["machine", "timeit", "write_json"]


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
