"""ra_sdk.kernels: CUDA kernels (``*.cu`` beside this file) and thin CuPy wrappers.

Nothing is compiled or imported at import time. The first call on a device compiles the
source through NVRTC (``cupy.RawModule``) and memoises the module per device and per
specialisation (the template argument is part of the kernel's name, e.g.
``clahe_interp<unsigned short>``). All functions take and return CuPy arrays on the
current device and stream, and never copy data to the host.

The CPU references are in :mod:`ra_sdk.scoring`; tests compare the two (``needs_cuda``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require

HERE = Path(__file__).resolve().parent
_THREADS = 256
#: a NULL pointer kernel argument (an 8-byte zero)
_NULL = np.uint64(0)
_OPTIONS = ("--std=c++17", "--fmad=false", f"-I{HERE}")


def cupy() -> Any:
    """The cupy module, or MissingDependencyError naming the ``gpu`` extra."""
    return require("cupy", "the CUDA kernels")


@functools.cache
def _module(device_id: int, source: str, names: tuple[str, ...]) -> Any:
    cp = cupy()
    code = (HERE / source).read_text()
    return cp.RawModule(code=code, options=_OPTIONS, name_expressions=names or None)


def _kernel(source: str, name: str, names: tuple[str, ...] = ()) -> Any:
    cp = cupy()
    return _module(cp.cuda.Device().id, source, names).get_function(name)


_CLAHE_NAMES = (*tuple(f"{k}<{t}>" for t in ("float", "unsigned short") for k in ("clahe_minmax", "clahe_tile_maps", "clahe_interp")), "clahe_rescale<false>", "clahe_rescale<true>")


def _clahe_kernel(name: str) -> Any:
    return _kernel("clahe.cu", name, _CLAHE_NAMES)


def _grid(n: int) -> tuple[int]:
    return ((n + _THREADS - 1) // _THREADS,)


def clahe(x: Any) -> Any:
    """Batched CLAHE on the GPU, equal to skimage's equalize_adapthist per image.

    Args:
        x: (B, H, W) CuPy array, float32 in [0, 1] or uint16.
    Returns:
        (B, H, W) float32 CuPy array in [0, 1].
    """
    cp = cupy()
    if x.ndim != 3:
        raise ValueError(f"expected (B, H, W), got shape {x.shape}")
    if x.dtype == cp.uint16:
        t = "unsigned short"
    else:
        x = x.astype(cp.float32, copy=False)
        t = "float"
    x = cp.ascontiguousarray(x)
    b, h, w = (int(s) for s in x.shape)
    ky, kx = max(h // 8, 1), max(w // 8, 1)
    pad_y0, pad_x0 = ky // 2, kx // 2
    pad_y1 = (ky - h % ky) % ky + -(-ky // 2)
    pad_x1 = (kx - w % kx) % kx + -(-kx // 2)
    nhy, nhx = (h + pad_y0 + pad_y1) // ky - 1, (w + pad_x0 + pad_x1) // kx - 1
    clim = max(int(0.01 * ky * kx), 1)
    mnmx = cp.empty((b, 2), cp.int32)
    maps = cp.empty((b, nhy, nhx, 256), cp.uint16)
    out = cp.empty((b, h, w), cp.float32)
    omnmx = cp.empty((b, 2), cp.int32)
    omnmx[:, 0] = np.iinfo(np.int32).max
    omnmx[:, 1] = 0
    hw = h * w
    i32 = np.int32
    _clahe_kernel(f"clahe_minmax<{t}>")((b,), (_THREADS,), (x, np.int64(hw), mnmx))
    _clahe_kernel(f"clahe_tile_maps<{t}>")(
        (nhy * nhx, b), (_THREADS,),
        (x, i32(h), i32(w), i32(ky), i32(kx), i32(pad_y0), i32(pad_x0), i32(nhy), i32(nhx), i32(clim), mnmx, maps),
    )
    _clahe_kernel(f"clahe_interp<{t}>")(
        _grid(b * hw), (_THREADS,),
        (x, i32(b), i32(h), i32(w), i32(ky), i32(kx), i32(pad_y0), i32(pad_x0), i32(nhy), i32(nhx), mnmx, maps, out, omnmx),
    )
    f64 = "true" if t == "unsigned short" else "false"
    _clahe_kernel(f"clahe_rescale<{f64}>")(_grid(b * hw), (_THREADS,), (out, i32(b), np.int64(hw), omnmx))
    return out


@functools.lru_cache(maxsize=32)
def _weights(device_id: int, kind: str, a: float, b: float) -> Any:
    """Filter taps on the device: ("gauss", sigma, truncate) or ("box", size, 0)."""
    cp = cupy()
    from ..scoring._cpu import gaussian_kernel1d

    w = gaussian_kernel1d(a, b) if kind == "gauss" else np.full(int(a), 1.0 / int(a))
    return cp.asarray(w, dtype=cp.float64)


def _taps(kind: str, a: float, b: float = 0.0) -> tuple[Any, int]:
    w = _weights(cupy().cuda.Device().id, kind, float(a), float(b))
    return w, (int(w.size) - 1) // 2


def gaussian_blur(x: Any, sigma: float = 2.0, *, truncate: float = 4.0) -> Any:
    """scipy.ndimage.gaussian_filter (mode 'reflect') of each image of (B, H, W) float32."""
    cp = cupy()
    x = cp.ascontiguousarray(x, dtype=cp.float32)
    n, h, w = (int(s) for s in x.shape)
    wt, r = _taps("gauss", sigma, truncate)
    tmp = cp.empty_like(x)
    out = cp.empty_like(x)
    args = (np.int32(n), np.int32(h), np.int32(w), np.int32(r))
    _kernel("score.cu", "sep_filter_v")(_grid(x.size), (_THREADS,), (wt, x, *args, tmp))
    _kernel("score.cu", "sep_filter_h")(_grid(x.size), (_THREADS,), (wt, tmp, *args, out))
    return out


def _ssim(a: Any, b: Any, *, gaussian_weights: bool, one_minus: bool) -> Any:
    cp = cupy()
    a = cp.ascontiguousarray(a, dtype=cp.float32)
    b = cp.ascontiguousarray(b, dtype=cp.float32)
    n, h, w = (int(s) for s in a.shape)
    if gaussian_weights:
        wt, r = _taps("gauss", 1.5, 3.5)
    else:
        wt, r = _taps("box", 7)
    win = 2 * r + 1
    if min(h, w) < win:
        raise ValueError(f"SSIM window {win} exceeds the image size {(h, w)}")
    mom = cp.empty((5, n, h, w), cp.float32)
    out = cp.empty((n, h, w), cp.float32)
    dims = (np.int32(n), np.int32(h), np.int32(w), np.int32(r))
    _kernel("score.cu", "ssim_moments_v")(_grid(a.size), (_THREADS,), (wt, a, b, *dims, mom))
    np_ = win * win
    _kernel("score.cu", "ssim_map_h")(
        _grid(a.size), (_THREADS,),
        (wt, mom, *dims, np.float32(np_ / (np_ - 1)), np.float32(0.01**2), np.float32(0.03**2), np.int32(one_minus), out),
    )
    return out


def ssim_map(a: Any, b: Any, *, gaussian_weights: bool = False) -> Any:
    """SSIM map of skimage.metrics.structural_similarity(a, b, data_range=1, full=True) per pair."""
    return _ssim(a, b, gaussian_weights=gaussian_weights, one_minus=False)


def feature_distance(feats_a: Any, feats_b: Any, size: tuple[int, int], *, weights: Any = None, eps: float = 1e-10) -> Any:
    """LPIPS-style feature distance (see ra_sdk.scoring._cpu.feature_distance), (B, H, W)."""
    cp = cupy()
    hh, ww = (int(s) for s in size)
    n = int(feats_a[0].shape[0])
    out = cp.zeros((n, hh, ww), cp.float32)
    for i, (fa, fb) in enumerate(zip(feats_a, feats_b)):
        fa = cp.ascontiguousarray(fa, dtype=cp.float32)
        fb = cp.ascontiguousarray(fb, dtype=cp.float32)
        _, c, h, w = (int(s) for s in fa.shape)
        d = cp.empty((n, h, w), cp.float32)
        wt = _NULL if weights is None else cp.ascontiguousarray(cp.asarray(weights[i]), dtype=cp.float32)
        _kernel("score.cu", "feature_level_distance")(
            _grid(n * h * w), (_THREADS,), (fa, fb, wt, np.int32(n), np.int32(c), np.int64(h * w), np.float32(eps), d)
        )
        _kernel("score.cu", "upsample_bilinear_add")(
            _grid(out.size), (_THREADS,), (d, np.int32(n), np.int32(h), np.int32(w), np.int32(hh), np.int32(ww), out)
        )
    return out


def fused_structural_map(
    x: Any, x_ph: Any, *, sigma: float = 2.0, gaussian_weights: bool = False, mask: Any = None, with_stats: bool = False
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
        wt, r = _taps("gauss", sigma, 4.0)
    else:
        wt, r = cp.ones((1,), cp.float64), 0
    pv = cp.empty_like(p)
    _kernel("score.cu", "sep_filter_v")(_grid(p.size), (_THREADS,), (wt, p, np.int32(2 * b), np.int32(h), np.int32(w), np.int32(r), pv))
    m = _NULL if mask is None else cp.ascontiguousarray(cp.broadcast_to(mask, (b, h, w)), dtype=cp.float32)
    _kernel("score.cu", "score_combine_h")(
        _grid(b * h * w), (_THREADS,),
        (wt, pv, c[:b], c[b:], m, np.int32(b), np.int32(h), np.int32(w), np.int32(r), amap, sums, maxs),
    )
    if with_stats:
        return amap, (sums, maxs.view(cp.float32))
    return amap


__all__ = ["clahe", "cupy", "feature_distance", "fused_structural_map", "gaussian_blur", "ssim_map"]
