"""Batched CLAHE on the GPU (``clahe.cu``); the CPU reference it equals is
:mod:`ra_sdk.scoring.cpu.clahe`, and both equal ``skimage.exposure.equalize_adapthist``
applied per image."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec import CLAHE_NBINS, clahe_clip_count, clahe_kernel_size, clahe_padding, clahe_regions
from ._build import THREADS, cupy, grid, kernel

_NAMES = (
    *(f"{k}<{t}>" for t in ("float", "unsigned short") for k in ("clahe_minmax", "clahe_tile_maps", "clahe_interp")),
    "clahe_rescale<false>",
    "clahe_rescale<true>",
)


def _k(name: str) -> Any:
    return kernel("clahe.cu", name, _NAMES)


def clahe(x: Any) -> Any:
    """Batched CLAHE, equal to skimage's equalize_adapthist per image. Four launches, no
    host copy.

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
    ky, kx = clahe_kernel_size(h, w)
    pad_y0, _, pad_x0, _ = clahe_padding(h, w)
    nhy, nhx = clahe_regions(h, w)
    mnmx = cp.empty((b, 2), cp.int32)
    maps = cp.empty((b, nhy, nhx, CLAHE_NBINS), cp.uint16)
    out = cp.empty((b, h, w), cp.float32)
    omnmx = cp.empty((b, 2), cp.int32)
    omnmx[:, 0] = np.iinfo(np.int32).max
    omnmx[:, 1] = 0
    hw = h * w
    i32 = np.int32
    geometry = (i32(ky), i32(kx), i32(pad_y0), i32(pad_x0), i32(nhy), i32(nhx))
    _k(f"clahe_minmax<{t}>")((b,), (THREADS,), (x, np.int64(hw), mnmx))
    _k(f"clahe_tile_maps<{t}>")((nhy * nhx, b), (THREADS,), (x, i32(h), i32(w), *geometry, i32(clahe_clip_count(ky, kx)), mnmx, maps))
    _k(f"clahe_interp<{t}>")(grid(b * hw), (THREADS,), (x, i32(b), i32(h), i32(w), *geometry, mnmx, maps, out, omnmx))
    f64 = "true" if t == "unsigned short" else "false"
    _k(f"clahe_rescale<{f64}>")(grid(b * hw), (THREADS,), (out, i32(b), np.int64(hw), omnmx))
    return out
