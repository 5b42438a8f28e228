"""Synthetic pathologies with pixel masks, for evaluation only (never for training).

Each generator takes a normal :class:`BrainSample` and a random generator and returns
``(image, mask)``: the changed image in [0, 1] and a boolean mask of what changed.
Sizes are in pixels at 128x128 and scale with the image side; contrasts are in units of
the [0, 1] image range.

How the defaults were chosen: on the embedded normal test split, each kind must change
the image by more than the scanner variation of the augmentation (so it is not invisible)
while staying inside the normal intensity range (so a plain intensity threshold does not
find it): local contrasts of 0.2-0.45 against grey/white matter of about 0.6-0.9, sizes of
3-8% of the brain's diameter, artefact amplitudes a few times the noise level.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .augment import BrainSample

LOCAL = ("mass", "hypointense_lesion", "edema", "resection_cavity", "enlarged_ventricles")
GLOBAL = ("atrophy", "artefacts")
TYPES = LOCAL + GLOBAL


@dataclass(frozen=True)
class PathologyConfig:
    mass_radius: tuple[float, float] = (6.0, 12.0)
    mass_contrast: tuple[float, float] = (0.25, 0.4)
    mass_effect: float = 0.6  # displacement at the border, as a fraction of the radius
    lesion_radius: tuple[float, float] = (5.0, 11.0)
    lesion_contrast: tuple[float, float] = (0.3, 0.45)  # darkening
    edema_radius: tuple[float, float] = (10.0, 18.0)
    edema_contrast: tuple[float, float] = (0.2, 0.3)  # T1: hypointense, in white matter
    cavity_radius: tuple[float, float] = (6.0, 11.0)
    cavity_level: float = 0.08  # CSF-like intensity
    ventricle_scale: tuple[float, float] = (1.5, 2.0)  # radial enlargement of the ventricles
    atrophy_depth: tuple[float, float] = (1.5, 2.5)  # px of cortex lost
    ghost_amplitude: tuple[float, float] = (0.25, 0.4)
    line_amplitude: tuple[float, float] = (0.35, 0.6)


def _blob(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float], radius: float, irregular: float = 0.35) -> np.ndarray:
    """A filled, irregular blob: a radius modulated by a few random harmonics."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    theta = np.arctan2(dy, dx)
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += irregular / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(dy, dx) <= radius * r


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma) if sigma > 0 else mask.astype(np.float32)


def _centre_in(rng: np.random.Generator, region: np.ndarray, margin_from: np.ndarray | None = None, margin: float = 0) -> tuple[float, float]:
    import cv2

    ok = region.astype(bool)
    if margin_from is not None and margin > 0:
        dist = cv2.distanceTransform(margin_from.astype(np.uint8), cv2.DIST_L2, 5)
        inner = ok & (dist > margin)
        if inner.any():
            ok = inner
    ys, xs = np.nonzero(ok)
    if ys.size == 0:
        ys, xs = np.nonzero(np.ones_like(region, bool))
    i = rng.integers(ys.size)
    return float(ys[i]), float(xs[i])


def _texture(rng: np.random.Generator, shape: tuple[int, int], amount: float) -> np.ndarray:
    import cv2

    t = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.5)
    return 1 + amount * t / (np.abs(t).max() + 1e-6)


def _scale(s: BrainSample) -> float:
    return s.image.shape[0] / 128.0


def mass(s: BrainSample, rng: np.random.Generator, cfg: PathologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Hyperintense irregular mass that pushes the tissue around it outwards."""
    import cv2

    f = _scale(s)
    r = rng.uniform(*cfg.mass_radius) * f
    cy, cx = _centre_in(rng, s.brain > 0, s.brain, margin=r * 1.5)
    n = s.image.shape[0]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    d = np.hypot(dy, dx) + 1e-3
    # Mass effect: sample from closer to the centre, strongest near the border, fading out.
    push = cfg.mass_effect * r * np.exp(-np.maximum(d - r, 0) / (1.5 * r)) * np.minimum(d / r, 1)
    mx, my = xx - push * dx / d, yy - push * dy / d
    img = cv2.remap(s.image, mx, my, cv2.INTER_LINEAR)
    blob = _blob(rng, (n, n), (cy, cx), r) & (s.brain > 0)
    soft = _soft(blob, 0.8 * f)
    c = rng.uniform(*cfg.mass_contrast)
    img = img + c * soft * _texture(rng, (n, n), 0.4)
    return np.clip(img, 0, 1).astype(np.float32), blob


def hypointense_lesion(s: BrainSample, rng: np.random.Generator, cfg: PathologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Infarct-like: a darker, irregular region within grey and white matter."""
    f = _scale(s)
    r = rng.uniform(*cfg.lesion_radius) * f
    tissue = (s.gm + s.wm) > 0.5
    cy, cx = _centre_in(rng, tissue, s.brain, margin=r)
    blob = _blob(rng, s.image.shape, (cy, cx), r, irregular=0.5) & tissue
    c = rng.uniform(*cfg.lesion_contrast)
    img = s.image * (1 - c * _soft(blob, 0.7 * f))
    return np.clip(img, 0, 1).astype(np.float32), blob


def edema(s: BrainSample, rng: np.random.Generator, cfg: PathologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse T1-hypointensity that follows the white matter, with soft borders."""
    f = _scale(s)
    r = rng.uniform(*cfg.edema_radius) * f
    cy, cx = _centre_in(rng, s.wm > 0.6, s.brain, margin=r * 0.5)
    region = _soft(_blob(rng, s.image.shape, (cy, cx), r, irregular=0.6), 3 * f)
    weight = region * np.clip((s.wm - 0.3) / 0.5, 0, 1)
    c = rng.uniform(*cfg.edema_contrast)
    img = s.image * (1 - c * weight)
    return np.clip(img, 0, 1).astype(np.float32), weight > 0.25


def resection_cavity(s: BrainSample, rng: np.random.Generator, cfg: PathologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """A CSF-filled cavity with a sharp border, reaching from the cortex inwards."""
    import cv2

    f = _scale(s)
    r = rng.uniform(*cfg.cavity_radius) * f
    dist = cv2.distanceTransform((s.brain > 0).astype(np.uint8), cv2.DIST_L2, 5)
    near_cortex = (dist > 0.5 * r) & (dist < 1.2 * r)
    cy, cx = _centre_in(rng, near_cortex if near_cortex.any() else s.brain > 0)
    blob = _blob(rng, s.image.shape, (cy, cx), r, irregular=0.2) & (s.brain > 0)
    img = np.where(blob, cfg.cavity_level * _texture(rng, s.image.shape, 0.3), s.image)
    return np.clip(img, 0, 1).astype(np.float32), blob


def enlarged_ventricles(s: BrainSample, rng: np.random.Generator, cfg: PathologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Hydrocephalus-like: the central CSF spaces expand radially, deforming the tissue."""
    import cv2

    n = s.image.shape[0]
    f = _scale(s)
    dist = cv2.distanceTransform((s.brain > 0).astype(np.uint8), cv2.DIST_L2, 5)
    deep = dist > 10 * f
    csf = deep & (s.image < 0.35) & (s.gm + s.wm < 0.5)
    if csf.sum() < 12 * f * f:  # no ventricles on this slice: seed a small central space
        cy, cx = _centre_in(rng, deep if deep.any() else s.brain > 0)
        csf = _blob(rng, (n, n), (cy, cx), 3 * f, irregular=0.3) & (s.brain > 0)
    ys, xs = np.nonzero(csf)
    cy, cx = ys.mean(), xs.mean()
    k = rng.uniform(*cfg.ventricle_scale)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    d = np.hypot(dy, dx) + 1e-3
    extent = np.sqrt(csf.sum() / np.pi) * 2.5 + 4 * f
    # Inside ~extent, sample from radius d / k (expansion); blend back to identity outside.
    w = np.clip(1 - d / (2.5 * extent), 0, 1) ** 1.5
    src = d * (1 - w * (1 - 1 / k))
    mx, my = cx + dx / d * src, cy + dy / d * src
    img = cv2.remap(s.image, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR)
    new_csf = cv2.remap(csf.astype(np.float32), mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR) > 0.5
    return np.clip(img, 0, 1).astype(np.float32), new_csf & ~csf | (new_csf & csf)


def atrophy(s: BrainSample, rng: np.random.Generator, cfg: PathologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Global: thinner cortex and wider sulci (grey matter near CSF becomes CSF-dark),
    and a slightly smaller brain. The mask is the whole brain."""
    import cv2

    f = _scale(s)
    depth = rng.uniform(*cfg.atrophy_depth) * f
    n = s.image.shape[0]
    csf = ((s.brain > 0) & (s.gm + s.wm < 0.4)) | (s.brain == 0)
    dist = cv2.distanceTransform((~csf).astype(np.uint8), cv2.DIST_L2, 5)
    lost = (dist < depth) & (s.gm > 0.3) & (s.brain > 0)
    img = np.where(lost, s.image * rng.uniform(0.15, 0.3), s.image)
    sc = rng.uniform(0.94, 0.97)
    m = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), 0, sc)
    img = cv2.warpAffine(img.astype(np.float32), m, (n, n), flags=cv2.INTER_LINEAR)
    return np.clip(img, 0, 1).astype(np.float32), s.brain > 0


def artefacts(s: BrainSample, rng: np.random.Generator, cfg: PathologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Global acquisition artefacts: motion ghosting (phase errors on k-space lines along
    the phase-encoding axis) or a spike/zipper line. The mask is where the image changed."""
    n = s.image.shape[0]
    if rng.random() < 0.5:
        k = np.fft.fftshift(np.fft.fft2(s.image))
        lines = rng.random(n) < 0.3
        phase = np.where(lines, rng.uniform(-1, 1, n) * np.pi * rng.uniform(*cfg.ghost_amplitude), 0)
        k = k * np.exp(1j * phase)[:, None]
        img = np.abs(np.fft.ifft2(np.fft.ifftshift(k))).astype(np.float32)
    else:
        img = s.image.copy()
        amp = rng.uniform(*cfg.line_amplitude)
        pos = int(rng.integers(n // 4, 3 * n // 4))
        zipper = amp * (0.5 + 0.5 * np.sign(np.sin(np.arange(n) * np.pi / 2 + rng.uniform(0, np.pi))))
        if rng.random() < 0.5:
            img[pos, :] += zipper
        else:
            img[:, pos] += zipper
    img = np.clip(img, 0, 1).astype(np.float32)
    return img, np.abs(img - s.image) > 0.05


GENERATORS: dict[str, Callable[[BrainSample, np.random.Generator, PathologyConfig], tuple[np.ndarray, np.ndarray]]] = {
    "mass": mass,
    "hypointense_lesion": hypointense_lesion,
    "edema": edema,
    "resection_cavity": resection_cavity,
    "enlarged_ventricles": enlarged_ventricles,
    "atrophy": atrophy,
    "artefacts": artefacts,
}


@functools.lru_cache(maxsize=8)
def preferred_slices(kind: str) -> np.ndarray | None:
    """Template slices on which ``kind`` makes sense (None: any): ventricle enlargement
    needs slices that show the lateral ventricles."""
    if kind != "enlarged_ventricles":
        return None
    import cv2

    from . import load_template

    t1 = load_template()["t1"].astype(np.float32) / 255.0
    keep = []
    for z in range(t1.shape[0]):
        brain = t1[z] > 0.05
        dist = cv2.distanceTransform(brain.astype(np.uint8), cv2.DIST_L2, 5)
        csf = (dist > 15) & (t1[z] < 0.35)
        if csf.sum() >= 40:
            keep.append(z)
    return np.asarray(keep)


def make(kind: str, s: BrainSample, *, seed: int = 0, config: PathologyConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply pathology ``kind`` to sample ``s``: returns (image float32 [0, 1], mask bool)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown pathology {kind!r}; valid: {', '.join(TYPES)}")
    rng = np.random.default_rng([seed, TYPES.index(kind), *s.key[1:]])
    img, mask = GENERATORS[kind](s, rng, config or PathologyConfig())
    return img, mask.astype(bool)
