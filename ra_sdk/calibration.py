"""Calibration: score held-out normal images with the finished pipeline and store the
quantiles, the image-level operating point and the pixel threshold in the engine file
(never in the graph)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .engine import Calibration, Engine, read_engine, update_meta
from .preprocess import Preset
from .scorer import Scorer

log = logging.getLogger(__name__)


def normal_images(source: str | Path, preset: Preset, *, n: int = 256, heldout: dict[str, Any] | None = None, start: int = 0, option: str = "--normals") -> tuple[np.ndarray, str]:
    """(images (N, size, size), description) of normals to calibrate on (the operating
    point here; int8 ranges in :func:`ra_sdk.export.onnx_export.int8_calibration`).

    ``"auto"``: the studies the engine's training run held out (``heldout``: its root and
    study ids, from the engine's metadata), else, for a brain MRI engine, the embedded
    data's validation split. ``"embedded"``: ``n`` images of that validation split from
    index ``start`` (brain MRI only; never used for training or testing). A folder: every
    screened slice of the studies under it. ``option``: the command-line option named in
    the error when an engine needs its own normals.
    """
    from .errors import ConfigError
    from .io import read_folder_images

    if str(source) == "auto" and heldout and Path(heldout["root"]).is_dir():
        images = read_folder_images(heldout["root"], preset, only=heldout["studies"])
        return images, f"held-out split of the training run ({len(heldout['studies'])} studies, {len(images)} images)"
    if str(source) in ("auto", "embedded"):
        if preset.modality != "MR":
            raise ConfigError(f"a {preset.name} engine needs its own normals: {option} DIR of normal studies not used for training "
                              "(it records no held-out split that can be read here, and the embedded normals are brain MRI)")
        from .data.augment import normal_batch

        return normal_batch("val", n, start=start, size=preset.size), f"embedded validation split ({n} images" + (f" from index {start})" if start else ")")
    out = read_folder_images(source, preset)
    return out, f"{Path(source).name}: {len(out)} images"


def calibrate(
    engine_path: str | Path,
    normals: str | Path = "auto",
    *,
    backend: str = "auto",
    device: str = "auto",
    n: int = 256,
    percentile: float = 95.0,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> Engine:
    """Score the normals with the engine's own pipeline and store the calibration in it.

    ``on_progress(images done, images in all)`` is called after each batch.
    """
    engine = read_engine(engine_path)
    images, desc = normal_images(normals, engine.meta.preset, n=n, heldout=(engine.meta.source or {}).get("heldout"))
    maps, scores = [], []
    with Scorer(engine, backend=backend, device=device, batch_size=batch_size) as scorer:
        for i in range(0, len(images), scorer.batch_size):
            m, s, _ = scorer.score(images[i : i + scorer.batch_size], recons=False)
            assert m is not None
            maps.append(m)
            scores.append(s)
            if on_progress is not None:
                on_progress(min(i + scorer.batch_size, len(images)), len(images))
    cal = Calibration.from_scores(np.concatenate(scores), metrics.pixel_threshold(maps), percentile=percentile, source=desc)
    log.info("calibrated %s on %s: threshold %.5g", engine_path, desc, cal.threshold)
    return update_meta(engine_path, calibration=cal)
