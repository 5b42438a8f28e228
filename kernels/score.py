"""The fused scoring kernels (``score.cu``): separable Gaussian, SSIM from separable local
moments, feature distance, and the whole structural map with its per-image reductions.
The CPU reference they equal is :mod:`ra_sdk.scoring.cpu.score` (scipy/skimage semantics).
All functions take and return CuPy arrays on the current device and stream."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec import (
    FEATURE_EPS,
    GAUSSIAN_TRUNCATE,
    SALIENCY_SIGMA,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_TRUNCATE,
    SSIM_WINDOW,
)
from ._build import NULL, THREADS, cupy, grid, kernel, taps
from .clahe import clahe


def _k(name: str) -> Any:
    return kernel("score.cu", name)


def gaussian_blur(x: Any, sigma: float = SALIENCY_SIGMA, *, truncate: float = GAUSSIAN_TRUNCATE) -> Any:
    """scipy.ndimage.gaussian_filter (mode 'reflect') of each image of (B, H, W) float32."""
    cp = cupy()
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    n, h, w = (int(s) for s in x.shape)
    wt, r = taps("gauss", sigma, truncate)
    tmp = cp.empty_like(x)
    out = cp.empty_like(x)
    args = (np.int32(n), np.int32(h), np.int32(w), np.int32(r))
    _k("sep_filter_v")(grid(x.size), (THREADS,), (wt, x, *args, tmp))
    _k("sep_filter_h")(grid(x.size), (THREADS,), (wt, tmp, *args, out))
    return out


def _ssim(a: Any, b: Any, *, gaussian_weights: bool, one_minus: bool) -> Any:
    cp = cupy()
    a = cp.ascontiguousarray(a, dtype=cp.float32)
    b = cp.ascontiguousarray(b, dtype=cp.float32)
    n, h, w = (int(s) for s in a.shape)
    if gaussian_weights:
        wt, r = taps("gauss", SSIM_SIGMA, SSIM_TRUNCATE)
    else:
        wt, r = taps("box", SSIM_WINDOW)
    win = 2 * r + 1
    if min(h, w) < win:
        raise ValueError(f"SSIM window {win} exceeds the image size {(h, w)}")
    mom = cp.empty((5, n, h, w), cp.float32)
    out = cp.empty((n, h, w), cp.float32)
    dims = (np.int32(n), np.int32(h), np.int32(w), np.int32(r))
    _k("ssim_moments_v")(grid(a.size), (THREADS,), (wt, a, b, *dims, mom))
    np_ = win * win
    _k("ssim_map_h")(
        grid(a.size), (THREADS,),
        (wt, mom, *dims, np.float32(np_ / (np_ - 1)), np.float32(SSIM_K1**2), np.float32(SSIM_K2**2), np.int32(one_minus), out),
    )
    return out


def ssim_map(a: Any, b: Any, *, gaussian_weights: bool = False) -> Any:
    """SSIM map of skimage.metrics.structural_similarity(a, b, data_range=1, full=True) per pair."""
    return _ssim(a, b, gaussian_weights=gaussian_weights, one_minus=False)


def feature_distance(feats_a: Any, feats_b: Any, size: tuple[int, int], *, weights: Any = None, eps: float = FEATURE_EPS) -> Any:
    """LPIPS-style feature distance (see ra_sdk.scoring.cpu.score.feature_distance), (B, H, W)."""
    cp = cupy()
    hh, ww = (int(s) for s in size)
    n = int(feats_a[0].shape[0])
    out = cp.zeros((n, hh, ww), cp.float32)
    for i, (fa, fb) in enumerate(zip(feats_a, feats_b)):
        fa = cp.ascontiguousarray(fa, dtype=cp.float32)
        fb = cp.ascontiguousarray(fb, dtype=cp.float32)
        _, c, h, w = (int(s) for s in fa.shape)
        d = cp.empty((n, h, w), cp.float32)
        wt = NULL if weights is None else cp.ascontiguousarray(cp.asarray(weights[i]), dtype=cp.float32)
        _k("feature_level_distance")(
            grid(n * h * w), (THREADS,), (fa, fb, wt, np.int32(n), np.int32(c), np.int64(h * w), np.float32(eps), d)
        )
        _k("upsample_bilinear_add")(
            grid(out.size), (THREADS,), (d, np.int32(n), np.int32(h), np.int32(w), np.int32(hh), np.int32(ww), out)
        )
    return out


def fused_structural_map(
    x: Any, x_ph: Any, *, sigma: float = SALIENCY_SIGMA, gaussian_weights: bool = False, mask: Any = None, with_stats: bool = False
) -> Any:
    """The whole structural RA map on the GPU: CLAHE of both images, 1 - SSIM for both
    pairs, Gaussian, residual, product (and mask), plus per-image sum and max.

    Launches: 4 (CLAHE of x and x_ph together) + 2 (SSIM) + 1 (vertical Gaussian) +
    1 (horizontal Gaussian fused with residual, product, mask and reduction).

    Args:
        x, x_ph: (B, H, W) float32 CuPy arrays in [0, 1].
    Returns:
        amap (B, H, W) float32; with ``with_stats``, also (sums (B,) float64, maxs (B,) float32).
    """
    cp = cupy()
    b, h, w = (int(s) for s in x.shape)
    both = cp.concatenate([x_ph, x]).astype(cp.float32, copy=False)
    c = clahe(both)  # [C(x_ph); C(x)]
    pa = cp.concatenate([both[:b], c[:b]])  # pairs (x_ph, x) and (C(x_ph), C(x))
    pb = cp.concatenate([both[b:], c[b:]])
    p = _ssim(pa, pb, gaussian_weights=gaussian_weights, one_minus=True)  # (2B, H, W)
    amap = cp.empty((b, h, w), cp.float32)
    sums = cp.zeros((b,), cp.float64)
    maxs = cp.zeros((b,), cp.uint32)
    if sigma > 0:
        wt, r = taps("gauss", sigma, GAUSSIAN_TRUNCATE)
    else:
        wt, r = cp.ones((1,), cp.float64), 0
    pv = cp.empty_like(p)
    _k("sep_filter_v")(grid(p.size), (THREADS,), (wt, p, np.int32(2 * b), np.int32(h), np.int32(w), np.int32(r), pv))
    m = NULL if mask is None else cp.ascontiguousarray(cp.broadcast_to(mask, (b, h, w)), dtype=cp.float32)
    _k("score_combine_h")(
        grid(b * h * w), (THREADS,),
        (wt, pv, c[:b], c[b:], m, np.int32(b), np.int32(h), np.int32(w), np.int32(r), amap, sums, maxs),
    )
    if with_stats:
        return amap, (sums, maxs.view(cp.float32))
    return amap


