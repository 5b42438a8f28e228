"""The numbers of the anomaly-score spec (DESIGN.md section 3) that both paths share.

The CPU reference (:mod:`ra_sdk.scoring.cpu`) and the CUDA kernels (:mod:`ra_sdk.kernels`)
take their CLAHE geometry, clip limit, filter taps and SSIM constants from here, so the two
can never disagree on a constant. Plain numpy; imports nothing else from ra-sdk.
"""

from __future__ import annotations

import functools

import numpy as np

#: CLAHE (skimage.exposure.equalize_adapthist defaults)
CLAHE_NBINS = 256
CLAHE_GRAY_LEVELS = 16384  # 2**14: skimage stretches each image to 14 bits before binning
CLAHE_CLIP_LIMIT = 0.01

#: Gaussian smoothing of the perceptual maps (scipy.ndimage.gaussian_filter, mode 'reflect')
SALIENCY_SIGMA = 2.0
GAUSSIAN_TRUNCATE = 4.0

#: SSIM (skimage.metrics.structural_similarity, data_range 1)
SSIM_WINDOW = 7  # uniform window
SSIM_SIGMA = 1.5  # Gaussian window of Wang et al., truncated at 3.5 sigma
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

#: feature distance: unit normalisation over channels
FEATURE_EPS = 1e-10


def clahe_kernel_size(h: int, w: int) -> tuple[int, int]:
    """skimage's default kernel: 1/8 of each side, at least one pixel."""
    return max(h // 8, 1), max(w // 8, 1)


def clahe_padding(h: int, w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) reflect padding: each side a multiple of the kernel plus
    half a kernel, as skimage pads before taking contextual regions."""
    ky, kx = clahe_kernel_size(h, w)
    return ky // 2, (ky - h % ky) % ky + -(-ky // 2), kx // 2, (kx - w % kx) % kx + -(-kx // 2)


def clahe_regions(h: int, w: int) -> tuple[int, int]:
    """Number of contextual regions (rows, columns) of an h x w image."""
    ky, kx = clahe_kernel_size(h, w)
    top, bottom, left, right = clahe_padding(h, w)
    return (h + top + bottom) // ky - 1, (w + left + right) // kx - 1


def clahe_clip_count(ky: int, kx: int) -> int:
    """The histogram clip limit in counts: clip_limit * kernel pixels, at least 1."""
    return max(int(CLAHE_CLIP_LIMIT * ky * kx), 1)


@functools.lru_cache(maxsize=16)
def gaussian_kernel1d(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> np.ndarray:
    """scipy.ndimage's Gaussian taps: radius int(truncate * sigma + 0.5), normalised (float64)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / (sigma * sigma) * x * x)
    w /= w.sum()
    w.setflags(write=False)
    return w


def box_kernel1d(size: int) -> np.ndarray:
    """scipy.ndimage.uniform_filter's taps: ``size`` weights of 1/size (float64)."""
    return np.full(int(size), 1.0 / int(size))


def ssim_taps(gaussian_weights: bool) -> np.ndarray:
    """The separable SSIM window: Gaussian (sigma 1.5, truncate 3.5) or 7-tap uniform."""
    return gaussian_kernel1d(SSIM_SIGMA, SSIM_TRUNCATE) if gaussian_weights else box_kernel1d(SSIM_WINDOW)
