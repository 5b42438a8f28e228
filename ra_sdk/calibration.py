"""Calibration: score held-out normal images with the finished pipeline and store the
quantiles, the image-level operating point and the pixel threshold in the engine file
(never in the graph)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import metrics
from .engine import Calibration, Engine, read_engine, update_meta
from .pipeline import Scorer
from .presets import Preset

log = logging.getLogger(__name__)


def normal_images(source: str | Path, preset: Preset, *, n: int = 256) -> tuple[np.ndarray, str]:
    """(images (N, size, size), description): ``"embedded"`` takes the validation split of
    the embedded brain data (never used for training or testing); a folder takes every
    screened slice of the normal studies under it."""
    if str(source) == "embedded":
        from .data.augment import normal_batch

        return normal_batch("val", n, size=preset.size), f"embedded validation split ({n} images)"
    from .io import read_folder_images

    out = read_folder_images(source, preset)
    return out, f"{Path(source).name}: {len(out)} images"


def calibrate(
    engine_path: str | Path,
    normals: str | Path = "embedded",
    *,
    backend: str = "auto",
    device: str = "auto",
    n: int = 256,
    percentile: float = 95.0,
    batch_size: int = 32,
) -> Engine:
    """Score the normals with the engine's own pipeline and store the calibration in it."""
    engine = read_engine(engine_path)
    images, desc = normal_images(normals, engine.meta.preset, n=n)
    with Scorer(engine, backend=backend, device=device, batch_size=batch_size) as scorer:
        maps, scores, _ = scorer.score(images)
    cal = Calibration.from_scores(scores, metrics.pixel_threshold(maps), percentile=percentile, source=desc)
    log.info("calibrated %s on %s: threshold %.5g", engine_path, desc, cal.threshold)
    return update_meta(engine_path, calibration=cal)
