"""The anomaly score (DESIGN.md section 3): one functional API, a CPU and a GPU path.

Every function takes numpy arrays (the CPU reference path, numpy + OpenCV) or CuPy arrays
(the GPU path through the CUDA kernels of ``ra_sdk.kernels``) and returns the same array
type. Images are (B, H, W) or (B, 1, H, W) float32 in [0, 1].

    A = |C(x_ph) - C(x)| * G(P(x_ph, x)) * G(P(C(x_ph), C(x)))      (times an optional mask)
    s = mean(A)   (or the top-k% mean, or the max)

C is CLAHE (scikit-image semantics per image), G a Gaussian (sigma 2, truncate 4,
'reflect'), P a perceptual map (``structural``: 1 - SSIM; ``features``: LPIPS-style
distance of network features).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from .._arrays import is_cupy as _is_cupy
from ..errors import ConfigError
from ..spec import GAUSSIAN_TRUNCATE, SALIENCY_SIGMA
from .config import AGGREGATIONS, PERCEPTUAL_KINDS, ScoreConfig
from .cpu import score as _cpu
from .cpu.clahe import clahe_cpu

#: images -> per-level feature maps; used by the ``features`` perceptual map
FeatureFn = Callable[[Any], Sequence[Any]]


def _as_bhw(x: Any) -> tuple[Any, tuple[int, ...]]:
    shape = tuple(x.shape)
    if x.ndim == 4:
        if shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) grey images, got shape {shape}")
        return x.reshape(shape[0], shape[2], shape[3]), shape
    if x.ndim != 3:
        raise ValueError(f"expected (B, H, W) or (B, 1, H, W), got shape {shape}")
    return x, shape


def _gpu():
    from .. import kernels

    return kernels


def clahe(x: Any) -> Any:
    """CLAHE of each 2-D image, equal to ``skimage.exposure.equalize_adapthist(img)``.

    Args:
        x: (B, H, W) or (B, 1, H, W), float32 in [0, 1] or uint16.
    Returns:
        float32 in [0, 1], same shape and array type.
    """
    x3, shape = _as_bhw(x)
    out = _gpu().clahe(x3) if _is_cupy(x) else clahe_cpu(np.asarray(x3))
    return out.reshape(shape)


def gaussian_blur(x: Any, sigma: float = SALIENCY_SIGMA, *, truncate: float = GAUSSIAN_TRUNCATE) -> Any:
    """``scipy.ndimage.gaussian_filter`` (mode 'reflect') over H and W of each image.

    Args:
        x: (B, H, W) or (B, 1, H, W) float32. Returns float32 of the same shape.
    """
    x3, shape = _as_bhw(x)
    if _is_cupy(x):
        return _gpu().gaussian_blur(x3, sigma, truncate=truncate).reshape(shape)
    return _cpu.gaussian_blur(np.asarray(x3), sigma, truncate=truncate).reshape(shape)


def perceptual_map(
    a: Any,
    b: Any,
    *,
    kind: str = "structural",
    size: tuple[int, int] | None = None,
    weights: Sequence[Any] | None = None,
    gaussian_weights: bool = False,
) -> Any:
    """A perceptual difference map between a and b, (B, H, W) float32 (larger = more different).

    Args:
        kind: "structural": a, b are (B, H, W) images; returns 1 - the SSIM map of
            ``skimage.metrics.structural_similarity(a, b, data_range=1, full=True)``
            (``gaussian_weights`` as in skimage).
            "features": a, b are lists of per-level (B, C, h, w) feature maps; returns the
            LPIPS-style distance summed over levels, upsampled to ``size`` = (H, W), with
            optional per-level channel ``weights``.
    """
    if kind == "structural":
        a3, shape = _as_bhw(a)
        b3, _ = _as_bhw(b)
        if _is_cupy(a3):
            return (1 - _gpu().ssim_map(a3, b3, gaussian_weights=gaussian_weights)).reshape(shape)
        return (np.float32(1) - _cpu.ssim_map(np.asarray(a3), np.asarray(b3), gaussian_weights=gaussian_weights)).reshape(shape)
    if kind == "features":
        if size is None:
            raise ValueError("perceptual_map(kind='features') needs size=(H, W)")
        if _is_cupy(a[0]):
            return _gpu().feature_distance(a, b, size, weights=weights)
        return _cpu.feature_distance(a, b, size, weights=weights)
    raise ConfigError(f"unknown perceptual map {kind!r}; valid: structural, features")


def anomaly_map(
    x: Any,
    x_ph: Any,
    feats: FeatureFn | None = None,
    *,
    config: ScoreConfig | None = None,
    mask: Any = None,
    feature_weights: Sequence[Any] | None = None,
) -> Any:
    """The RA anomaly map A = R * S (DESIGN.md 3.3-3.5).

    Args:
        x: input images, (B, H, W) or (B, 1, H, W) float32 in [0, 1].
        x_ph: pseudo-healthy reconstructions, same shape.
        feats: for ``config.perceptual == "features"``, a function mapping (B, 1, H, W)
            images to per-level feature maps (the model's encoder, or LPIPS).
        mask: optional foreground mask broadcastable to (B, H, W).
        feature_weights: per-level channel weights for ``features`` (LPIPS linear heads).
    Returns:
        (B, H, W) float32 anomaly map, same array type as x.
    """
    return _anomaly_map_later(x, x_ph, feats, config or ScoreConfig(), mask, feature_weights, None, None)()


def _anomaly_map_later(x: Any, x_ph: Any, feats: FeatureFn | None, cfg: ScoreConfig, mask: Any, weights: Sequence[Any] | None,
                       clahe_x: Any, side: Executor | None) -> Callable[[], Any]:
    """The anomaly map, with the host steps on ``side`` when given (see score_batch_later);
    ``mask`` and ``clahe_x`` may be laters. Returns a later of the map."""
    x3, _ = _as_bhw(x)
    p3, _ = _as_bhw(x_ph)
    if x3.shape != p3.shape:
        raise ValueError(f"x and x_ph differ in shape: {tuple(x3.shape)} vs {tuple(p3.shape)}")
    xp = _gpu().cupy() if _is_cupy(x3) else np
    x3, p3 = _unit(x3), _unit(p3)
    if cfg.perceptual == "structural" and cfg.use_clahe and _is_cupy(x3):
        amap = _gpu().fused_structural_map(x3, p3, sigma=cfg.sigma, gaussian_weights=cfg.ssim_gaussian, mask=_value(mask))
        return lambda: amap
    if cfg.use_clahe:
        cx = clahe_x if clahe_x is not None else _later(side, clahe, x3)
        cp = _later(side, clahe, p3)
    else:
        cx, cp = x3, p3
    s1 = fcx = fcp = None
    size = (int(x3.shape[1]), int(x3.shape[2]))
    if cfg.perceptual != "none":
        # The network passes run here, in turn; the host work between them goes aside.
        s1 = _later(side, _saliency, _inputs(p3, feats, cfg), _inputs(x3, feats, cfg), cfg, size, weights)
        fcx = _inputs(_value(cx), feats, cfg)
        fcp = _inputs(_value(cp), feats, cfg)

    def finish() -> Any:
        amap = xp.abs(_value(cp) - _value(cx))
        if cfg.perceptual != "none":
            s2 = _saliency(fcp, fcx, cfg, size, weights)
            amap = amap * (_value(s1) * s2)
        m = _value(mask)
        if m is not None:
            amap = amap * m
        return amap.astype(xp.float32, copy=False)

    return _later(side, finish)


def _unit(x: Any) -> Any:
    """Images as the score reads them: float32, clipped to [0, 1] (numpy or CuPy)."""
    xp = _gpu().cupy() if _is_cupy(x) else np
    return xp.clip(x.astype(xp.float32, copy=False), 0, 1)


def clahe_of_input(x: Any) -> Any:
    """C(x) of (B, H, W) inputs exactly as the anomaly map computes it (``clahe_x`` of
    :func:`score_batch_later`, made ahead while the reconstruction runs)."""
    return clahe(_unit(x))


def _value(v: Any) -> Any:
    """The value of a later (see _later), or v itself."""
    return v() if callable(v) else v


def _later(side: Executor | None, fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """fn(*args) on ``side`` (or now, without one); call the result to get its value."""
    if side is None:
        value = fn(*args)
        return lambda: value
    return side.submit(fn, *args).result


def _inputs(images: Any, feats: FeatureFn | None, cfg: ScoreConfig) -> Any:
    """What the perceptual map compares: the images (structural) or their feature levels."""
    if cfg.perceptual == "structural":
        return images
    if feats is None:
        raise ConfigError("the 'features' perceptual map needs a feature function (feats=...)")
    return list(feats(images[:, None]))


def _saliency(a: Any, b: Any, cfg: ScoreConfig, size: tuple[int, int], weights: Sequence[Any] | None) -> Any:
    """G(P(a, b)): the perceptual map of two images' inputs (``_inputs``), smoothed."""
    s = perceptual_map(a, b, kind=cfg.perceptual, size=size, weights=weights, gaussian_weights=cfg.ssim_gaussian)
    return gaussian_blur(s, cfg.sigma) if cfg.sigma > 0 else s


def image_score(amap: Any, mask: Any = None, *, aggregation: str = "mean", topk: float = 0.01) -> Any:
    """Per-image score of (B, H, W) anomaly maps: the mean (the paper), the mean of the top
    ``topk`` fraction of pixels, or the max.

    With a ``mask``, "mean" averages the mask's pixels only; for "topk" and "max" a pixel
    outside the mask counts as zero (anomaly maps are non-negative), so k stays a fraction
    of the image and an image with little foreground gets a small, finite score (with the
    outside as -inf, an image with fewer than k foreground pixels scored -inf).

    Returns a (B,) float array of the input's array type.
    """
    xp = _gpu().cupy() if _is_cupy(amap) else np
    a3, _ = _as_bhw(amap)
    b = a3.shape[0]
    flat = a3.reshape(b, -1)
    if mask is not None:
        m = xp.broadcast_to(xp.asarray(mask).reshape(-1, *a3.shape[1:]), a3.shape).reshape(b, -1).astype(bool)
        if aggregation == "mean":
            return (flat.astype(xp.float64) * m).sum(1) / xp.maximum(m.sum(1), 1)
        flat = xp.where(m, flat, 0)
    if aggregation == "mean":
        return flat.astype(xp.float64).mean(1)
    if aggregation == "max":
        return flat.max(1).astype(xp.float64)
    if aggregation == "topk":
        n = flat.shape[1]
        k = max(1, round(topk * n))
        if xp is np:
            return _cpu.topk_mean(flat, k)
        vals = xp.nan_to_num(flat.astype(xp.float64), nan=-xp.inf)
        return (-xp.sort(-vals, axis=1)[:, :k]).mean(1)
    raise ConfigError(f"unknown aggregation {aggregation!r}; valid: {', '.join(AGGREGATIONS)}")


def study_score(slice_scores: Sequence[float] | np.ndarray, *, how: str = "max", k: int = 3) -> tuple[float, int]:
    """Aggregate one study's slice scores: "max" (default) or "topk" (mean of the k largest).

    Returns (score, index of the slice that drove it: the highest-scoring slice).
    """
    s = np.asarray(slice_scores, np.float64)
    if s.size == 0:
        raise ValueError("a study needs at least one slice score")
    top = int(np.argmax(s))
    if how == "max":
        return float(s[top]), top
    if how == "topk":
        return float(np.sort(s)[::-1][: max(1, k)].mean()), top
    raise ConfigError(f"unknown study aggregation {how!r}; valid: max, topk")


def foreground_mask(x: Any, level: float, *, sigma: float = SALIENCY_SIGMA) -> Any:
    """(B, H, W) float32 mask of the pixels where the Gaussian-smoothed input exceeds
    ``level`` (numpy or CuPy, as x)."""
    x3, _ = _as_bhw(x)
    xp = _gpu().cupy() if _is_cupy(x3) else np
    return (gaussian_blur(x3.astype(xp.float32, copy=False), sigma) > level).astype(xp.float32)


def score_batch(
    x: Any,
    x_ph: Any,
    feats: FeatureFn | None = None,
    *,
    config: ScoreConfig | None = None,
    mask: Any = None,
    feature_weights: Sequence[Any] | None = None,
) -> tuple[Any, Any]:
    """Anomaly maps and image scores of a batch: (maps (B, H, W), scores (B,)).

    On a GPU, the structural map with CLAHE runs as one fused pass whose per-image sum and
    max give the "mean" and "max" scores directly (no second reduction over the maps).
    """
    return score_batch_later(x, x_ph, feats, config or ScoreConfig(), mask, feature_weights, None, None)()


def score_batch_later(x: Any, x_ph: Any, feats: FeatureFn | None, cfg: ScoreConfig, mask: Any, feature_weights: Sequence[Any] | None,
                      clahe_x: Any, side: Executor | None) -> Callable[[], tuple[Any, Any]]:
    """:func:`score_batch`, with the host steps that need no network on ``side``.

    The network passes of ``feats`` run on the calling thread, in turn; C(x), C(x_ph), the
    saliency terms, the map and the scores go to ``side`` (a FIFO pool: each step is
    submitted after the steps it waits for, so no step waits on one not yet started), where
    they run while the calling thread runs the next network pass. Returns once the last
    network pass is done, with a function that waits for and returns (maps, scores). The
    same steps on the same data as :func:`score_batch`: the same bits. Without ``side``,
    everything runs now. ``mask`` and ``clahe_x`` (C(x), when the caller made it while the
    reconstruction ran) may be such functions too. All arguments are positional, as in
    ``_anomaly_map_later``: this is the Scorer's entry, :func:`score_batch` the public one.
    """
    if mask is None and cfg.foreground > 0:
        mask = _later(side, foreground_mask, x, cfg.foreground)
    if _is_cupy(x) and cfg.perceptual == "structural" and cfg.use_clahe and cfg.aggregation in ("mean", "max") and mask is None:
        cp = _gpu().cupy()
        x3, p3 = _unit(_as_bhw(x)[0]), _unit(_as_bhw(x_ph)[0])
        amap, (sums, maxs) = _gpu().fused_structural_map(x3, p3, sigma=cfg.sigma, gaussian_weights=cfg.ssim_gaussian, with_stats=True)
        n = amap.shape[1] * amap.shape[2]
        out = (amap, (sums / n if cfg.aggregation == "mean" else maxs.astype(cp.float64)))
        return lambda: out
    amap = _anomaly_map_later(x, x_ph, feats, cfg, mask, feature_weights, clahe_x, side)
    return _later(side, lambda: (amap(), image_score(amap(), _value(mask), aggregation=cfg.aggregation, topk=cfg.topk)))


__all__ = [
    "AGGREGATIONS",
    "PERCEPTUAL_KINDS",
    "ScoreConfig",
    "anomaly_map",
    "clahe",
    "foreground_mask",
    "gaussian_blur",
    "image_score",
    "perceptual_map",
    "score_batch",
    "score_batch_later",
    "study_score",
]
