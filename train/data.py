"""Training data: augmented pools of the embedded normal brain slices, normal studies from a
folder, the train/validation split, and on-the-fly augmentation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ra_sdk.preprocess import get_preset


def _make_pool_chunk(args: tuple[str, int, int, int, int]) -> np.ndarray:
    from ra_sdk.data.augment import normal_batch

    split, start, n, seed, size = args
    return normal_batch(split, n, start=start, seed=seed, size=size)


def make_pool(split: str, n: int, *, seed: int, size: int, workers: int = 0) -> np.ndarray:
    """n augmented normal images of ``split`` (deterministic): (n, 1, size, size) float32."""
    chunk = 64
    jobs = [(split, s, min(chunk, n - s), seed, size) for s in range(0, n, chunk)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_make_pool_chunk, jobs)
    else:
        parts = [_make_pool_chunk(j) for j in jobs]
    return np.concatenate(parts)[:, None]


def split_studies(folder: str | Path, *, val_fraction: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """Split the studies under ``folder`` (never their images) into training and validation:
    a seeded shuffle of the study ids, ``val_fraction`` of them (at least one) held out.
    Returns {"root", "train", "val", "val_fraction", "seed"}: what ``split.json`` holds."""
    from ra_sdk.errors import ConfigError
    from ra_sdk.io import discover

    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = [s.id for s in discover(folder)]
    if len(ids) < 2:
        raise ConfigError(f"{folder}: {len(ids)} studies found; a training folder needs at least 2 (one is held out for validation)")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    return {"root": str(Path(folder).resolve()), "train": sorted(ids[i] for i in order[n_val:]), "val": sorted(ids[i] for i in order[:n_val]), "val_fraction": val_fraction, "seed": seed}


def studies_as_images(root: str | Path, ids: list[str], preset_name: str, size: int) -> np.ndarray:
    """The screened slices of the studies ``ids`` under ``root``: (N, 1, size, size);
    studies that fail to read are skipped with a warning."""
    from ra_sdk.io import read_folder_images

    return read_folder_images(root, get_preset(preset_name).replace(size=size), only=ids)[:, None]


def training_data(
    *, size: int, data: str | Path | None = None, preset: str = "brain-mri-t1", pool_size: int = 2048, val_size: int = 128, seed: int = 0, workers: int = 0,
    val_fraction: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """(train, validation images (N, 1, size, size), split): with ``data``, the screened
    slices of its studies split by study (:func:`split_studies`); without, augmented pools of
    the embedded brain data's train and validation splits (split None)."""
    if data is None:
        return make_pool("train", pool_size, seed=seed, size=size, workers=workers), make_pool("val", val_size, seed=seed, size=size), None
    split = split_studies(data, val_fraction=val_fraction, seed=seed)
    return studies_as_images(data, split["train"], preset, size), studies_as_images(data, split["val"], preset, size), split


def augment_batch(x: torch.Tensor, g: torch.Generator, *, hflip: bool = True) -> torch.Tensor:
    """Random affine (rotation 10 deg, translate 0.1, scale 0.9-1.1) and, with ``hflip``, a
    left-right mirror half of the time (the preset says whether laterality allows it; the
    random draws are the same either way, so the stream does not depend on it)."""
    b = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=g, device=g.device).to(dev) * (hi - lo) + lo

    ang = u(-10, 10) * math.pi / 180
    sc = u(0.9, 1.1)
    tx, ty = u(-0.2, 0.2), u(-0.2, 0.2)  # 0.1 of the side in [-1, 1] coordinates
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    if not hflip:
        flip = torch.ones_like(flip)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
