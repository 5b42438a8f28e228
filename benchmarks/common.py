"""One timing method for every benchmark (STYLE.md item 13).

Warm-up calls first (compilation, caches), then ``repeat`` timed calls; device work is
synchronised inside the timed region. Reported: median, p10/p90, min, max, n.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def timeit(fn: Callable[[], Any], *, warmup: int = 2, repeat: int = 7, sync: Callable[[], Any] | None = None) -> dict[str, float]:
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    ts = []
    for _ in range(repeat):
        if sync:
            sync()
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t)
    a = np.asarray(ts)
    return {
        "median_s": float(np.median(a)),
        "p10_s": float(np.percentile(a, 10)),
        "p90_s": float(np.percentile(a, 90)),
        "min_s": float(a.min()),
        "max_s": float(a.max()),
        "n": int(a.size),
    }


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    import importlib.metadata as md

    for d in ("numpy", "opencv-python-headless", "scikit-image", "torch", "cupy-cuda12x", "cupy-cuda13x", "onnxruntime"):
        try:
            info[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return info


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
