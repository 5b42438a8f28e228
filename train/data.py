"""Training data: augmented pools of the embedded normal brain slices, normal studies from a
folder, the train/validation split, and on-the-fly augmentation."""

from __future__ import annotations

import math
from pathlib import Path

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


def images_from_folder(folder: str | Path, preset_name: str, size: int) -> np.ndarray:
    """Every screened slice of the normal studies under ``folder``: (N, 1, size, size)."""
    from ra_sdk.io import read_folder_images

    return read_folder_images(folder, get_preset(preset_name).replace(size=size))[:, None]


def training_data(*, size: int, data: str | Path | None = None, preset: str = "brain-mri-t1", pool_size: int = 2048, val_size: int = 128, seed: int = 0, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) images (N, 1, size, size): with ``data``, every screened slice of
    the normal studies under it, a tenth (at least one) held out at random (seeded);
    without, augmented pools of the embedded brain data's train and validation splits."""
    if data is None:
        return make_pool("train", pool_size, seed=seed, size=size, workers=workers), make_pool("val", val_size, seed=seed, size=size)
    imgs = images_from_folder(data, preset, size)
    order = np.random.default_rng(seed).permutation(len(imgs))
    n_val = max(1, len(imgs) // 10)
    return imgs[order[n_val:]], imgs[order[:n_val]]


def augment_batch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random affine (rotation 10 deg, translate 0.1, scale 0.9-1.1) and horizontal flip."""
    b = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=g, device=g.device).to(dev) * (hi - lo) + lo

    ang = u(-10, 10) * math.pi / 180
    sc = u(0.9, 1.1)
    tx, ty = u(-0.2, 0.2), u(-0.2, 0.2)  # 0.1 of the side in [-1, 1] coordinates
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
