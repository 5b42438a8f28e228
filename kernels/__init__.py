"""ra_sdk.kernels: CUDA kernels beside their thin CuPy wrappers, one module per op, each
paired with the CPU reference it must equal (``ra_sdk.scoring.cpu``):

    clahe.cu + clahe.py   batched CLAHE                 <->  ra_sdk.scoring.cpu.clahe
    score.cu + score.py   Gaussian, SSIM, feature        <->  ra_sdk.scoring.cpu.score
                          distance, the fused map

Importing this package compiles nothing and imports no cupy (see ``_build``). All
functions take and return CuPy arrays on the current device and stream, and never copy
data to the host. Shared constants (CLAHE geometry, clip limit, taps) live in
:mod:`ra_sdk.spec`.
"""

from __future__ import annotations

from ._build import cupy
from .clahe import clahe
from .score import feature_distance, fused_structural_map, gaussian_blur, ssim_map

__all__ = ["clahe", "cupy", "feature_distance", "fused_structural_map", "gaussian_blur", "ssim_map"]
