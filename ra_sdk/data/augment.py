"""Normal brain images from the embedded template, made to look like different people
and scanners by deterministic augmentation (numpy + OpenCV).

A sample is fully determined by (split, index, seed): its slice and every augmentation
parameter come from ``numpy.random.default_rng([seed, split_id, index])``. The splits
use disjoint seed streams, so train, validation and test never share a (slice, seed) pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import load_template

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes (uniform unless noted). Zero turns a change off."""

    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05  # fraction of the side
    elastic_alpha: float = 3.0  # displacement amplitude in template pixels
    elastic_sigma: float = 12.0  # smoothness of the displacement field
    hflip: float = 0.5  # probability
    tissue_contrast: float = 0.08  # grey/white-matter contrast change (scanner, sequence)
    bias: float = 0.25  # amplitude of a smooth multiplicative bias field
    gamma: tuple[float, float] = (0.75, 1.35)
    noise: tuple[float, float] = (0.0, 0.03)  # Gaussian noise sigma (of the [0, 1] range)
    blur: tuple[float, float] = (0.0, 0.8)  # Gaussian blur sigma in output pixels


@dataclass
class BrainSample:
    """One normal image at the model size, with what the pathology generator needs.

    image: (S, S) float32 in [0, 1]; brain, gm, wm: (S, S) float32 in [0, 1] (brain is
    binary); slice_index: index into the embedded template; key: (split, index, seed).
    """

    image: np.ndarray
    brain: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    slice_index: int
    key: tuple[str, int, int]


def _rng(split: str, index: int, seed: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return np.random.default_rng([seed, SPLITS[split], index])


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    import cv2

    noise = rng.standard_normal(shape).astype(np.float32)
    f = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return f / (np.abs(f).max() + 1e-8)


def _pad_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    return np.pad(a, ((top, s - h - top), (left, s - w - left)))


def usable_slices(min_brain_fraction: float = 0.15) -> np.ndarray:
    """Template slices whose brain covers at least this fraction of the padded square."""
    t1 = load_template()["t1"]
    s = max(t1.shape[1:])
    frac = (t1 > 12).sum((1, 2)) / float(s * s)
    return np.nonzero(frac >= min_brain_fraction)[0]


def sample(
    split: str,
    index: int,
    *,
    seed: int = 0,
    size: int = 128,
    config: AugmentConfig | None = None,
    slice_index: int | None = None,
    slices: np.ndarray | None = None,
) -> BrainSample:
    """The ``index``-th normal sample of ``split`` (deterministic).

    ``slice_index`` pins the template slice (the augmentation stays that of the index, so
    neighbouring slices with one index form a consistent volume); ``slices`` restricts
    the random choice to those template slices.
    """
    import cv2

    cfg = config or AugmentConfig()
    rng = _rng(split, index, seed)
    tpl = load_template()
    pool = usable_slices() if slices is None else np.asarray(slices)
    z = int(pool[rng.integers(len(pool))])
    if slice_index is not None:
        z = int(slice_index)
    t1, gm, wm = (_pad_square(tpl[k][z].astype(np.float32) / 255.0) for k in ("t1", "gm", "wm"))
    n = t1.shape[0]

    # Geometry: affine (rotation, scale, translation, flip) then a smooth elastic warp,
    # applied to the image and the tissue maps alike.
    ang = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    sc = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-cfg.translate, cfg.translate, 2) * n
    m = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), ang, sc)
    m[:, 2] += (tx, ty)
    if rng.random() < cfg.hflip:
        m = np.array([[-1, 0, n - 1], [0, 1, 0]], np.float64) @ np.vstack([m, [0, 0, 1]])
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    inv = cv2.invertAffineTransform(m)
    mx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    my = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    if cfg.elastic_alpha > 0:
        mx = mx + cfg.elastic_alpha * _smooth_field(rng, (n, n), cfg.elastic_sigma)
        my = my + cfg.elastic_alpha * _smooth_field(rng, (n, n), cfg.elastic_sigma)
    warp = [cv2.remap(a, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR, borderValue=0.0) for a in (t1, gm, wm)]
    t1, gm, wm = (cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA) for a in warp)
    brain = (t1 > 0.05).astype(np.float32)

    # Appearance: tissue contrast, bias field, gamma, blur, noise.
    img = t1 + rng.uniform(-cfg.tissue_contrast, cfg.tissue_contrast) * wm + rng.uniform(-cfg.tissue_contrast, cfg.tissue_contrast) * gm
    img = np.clip(img, 0, None) * brain
    if cfg.bias > 0:
        img = img * np.exp(cfg.bias * _smooth_field(rng, (size, size), size / 3))
    hi = np.percentile(img[brain > 0], 99.5) if brain.any() else 1.0
    img = np.clip(img / max(hi, 1e-6), 0, 1) ** rng.uniform(*cfg.gamma)
    bs = rng.uniform(*cfg.blur)
    if bs > 0.05:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), bs)
    img = img + rng.normal(0, rng.uniform(*cfg.noise), img.shape) * (brain > 0)
    img = np.clip(img, 0, 1).astype(np.float32)
    return BrainSample(img, brain, np.clip(gm, 0, 1), np.clip(wm, 0, 1), z, (split, index, seed))


def normal_batch(split: str, n: int, *, start: int = 0, seed: int = 0, size: int = 128, config: AugmentConfig | None = None) -> np.ndarray:
    """(n, size, size) float32 images: samples start .. start + n - 1 of ``split``."""
    return np.stack([sample(split, i, seed=seed, size=size, config=config).image for i in range(start, start + n)])
