"""CPU reference path of the anomaly score (numpy + OpenCV), batched over images.

Each filter reproduces the scipy.ndimage arithmetic it stands for: a 1-D pass computes in
float64 and stores float32, axis 0 (H) first, then axis 1 (W), as
``scipy.ndimage.gaussian_filter`` / ``uniform_filter`` do on a float32 2-D image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...spec import (
    FEATURE_EPS,
    GAUSSIAN_TRUNCATE,
    SALIENCY_SIGMA,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_TRUNCATE,
    SSIM_WINDOW,
    box_kernel1d,
    gaussian_kernel1d,
)
from .threads import map_images

#: 'reflect' in scipy.ndimage (d c b a | a b c d | d c b a) is BORDER_REFLECT in OpenCV
_BORDER = 2  # cv2.BORDER_REFLECT, without importing cv2 at module load


def _correlate_hw(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable correlation of (B, H, W) float32 with 1-D kernel k along H then W.

    Each pass runs in float64 and rounds to float32, as scipy does between its passes. One
    image at a time: a 128 x 128 image stays in cache through both passes, which made the
    saliency Gaussian 2.5x faster than one pass over the whole batch laid side by side. The
    Gaussian gives scipy's bits (and the batch-wide pass's) on the test images; the 7-tap
    box of SSIM differs from scipy's running sum by at most 1 float32 ulp in some pixels,
    as the batch-wide pass did (in other pixels).
    """
    import cv2

    b, h, w = x.shape
    r = len(k) // 2
    k = np.asarray(k, np.float64)
    out = np.empty((b, h, w), np.float32)
    for i in range(b):
        img = x[i].astype(np.float64)
        if h > 1 or r == 0:
            img = _filter(cv2, img, k, r, axis=0)
        img = img.astype(np.float32).astype(np.float64)
        if w > 1 or r == 0:
            img = _filter(cv2, img, k, r, axis=1)
        out[i] = img
    return out


_ONE = np.ones(1)


def _filter(cv2, img: np.ndarray, k: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Correlate float64 (H, W) with 1-D k along ``axis``, scipy's 'reflect' border."""
    n = img.shape[axis]
    if r < n:
        kx, ky = (_ONE, k) if axis == 0 else (k, _ONE)
        return cv2.sepFilter2D(img, cv2.CV_64F, kx, ky, anchor=(-1, -1), delta=0.0, borderType=_BORDER)
    # Kernel wider than the image: pad by repeated half-sample reflection first (numpy's
    # 'symmetric' equals scipy's 'reflect' for any pad width), then correlate 'valid'.
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    p = np.pad(img, pad, mode="symmetric")
    out = np.zeros_like(img)
    for i, wgt in enumerate(k):
        sl = [slice(None), slice(None)]
        sl[axis] = slice(i, i + n)
        out += wgt * p[tuple(sl)]
    return out


def gaussian_blur(x: np.ndarray, sigma: float = SALIENCY_SIGMA, *, truncate: float = GAUSSIAN_TRUNCATE) -> np.ndarray:
    """scipy.ndimage.gaussian_filter (mode 'reflect') of each (H, W) image of (B, H, W)."""
    return _correlate_hw(np.asarray(x, np.float32), gaussian_kernel1d(float(sigma), float(truncate)))


def topk_mean(values: np.ndarray, k: int) -> np.ndarray:
    """The mean of the k largest values of each row of (B, n) floats, NaN counting as -inf,
    summed in float64 in descending order: the same bits as sorting each whole row in
    float64 (tests/test_scoring.py), up to the sign of a zero mean.

    A selection over the whole row is slow on anomaly maps: their background is a plateau of
    equal zeros, the worst case of numpy's selection (0.35 ms per 128 x 128 map). The k
    largest are selected among the positive values when there are k of them (0.09 ms), and
    from the rest only for what is missing. Selecting in float32 picks the same values.
    """
    b, n = values.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    top = np.empty((b, k))
    for i in range(b):
        row = values[i]
        pos = row > 0
        p = row[pos]
        if p.size >= k:
            top[i] = np.partition(p, p.size - k)[p.size - k :]
        else:
            rest = row[~pos].astype(np.float64)
            rest[np.isnan(rest)] = -np.inf
            need = k - p.size
            top[i, : p.size] = p
            top[i, p.size :] = np.partition(rest, rest.size - need)[rest.size - need :]
    top = -np.sort(-top, axis=1)
    return top.mean(1)


def uniform_filter(x: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.uniform_filter(size) of each image (mode 'reflect'); size odd."""
    return _correlate_hw(np.asarray(x, np.float32), box_kernel1d(size))


def ssim_map(
    a: np.ndarray,
    b: np.ndarray,
    *,
    data_range: float = 1.0,
    gaussian_weights: bool = False,
    win_size: int | None = None,
    sigma: float = SSIM_SIGMA,
) -> np.ndarray:
    """The full SSIM map of skimage.metrics.structural_similarity(a, b, data_range, full=True)
    for each pair of (B, H, W) float32 images (sample covariance, K1 0.01, K2 0.03)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if gaussian_weights:
        win = win_size or 2 * int(SSIM_TRUNCATE * sigma + 0.5) + 1
        kern = gaussian_kernel1d(sigma, SSIM_TRUNCATE)

        def filt(v: np.ndarray) -> np.ndarray:
            return _correlate_hw(v, kern)
    else:
        win = win_size or SSIM_WINDOW

        def filt(v: np.ndarray) -> np.ndarray:
            return uniform_filter(v, win)

    if min(a.shape[1:]) < win:
        raise ValueError(f"SSIM window {win} exceeds the image size {a.shape[1:]}")
    f32 = np.float32
    cov_norm = f32(win * win / (win * win - 1))
    # One filtering call over the five moment images, stacked along the batch.
    stack = np.concatenate([a, b, a * a, b * b, a * b])
    ux, uy, uxx, uyy, uxy = np.split(filt(stack), 5)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = f32((SSIM_K1 * data_range) ** 2)
    c2 = f32((SSIM_K2 * data_range) ** 2)
    a1 = f32(2) * ux * uy + c1
    a2 = f32(2) * vxy + c2
    b1 = ux**2 + uy**2 + c1
    b2 = vx + vy + c2
    return (a1 * a2) / (b1 * b2)


def upsample_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torch.nn.functional.interpolate(x, size, mode='bilinear', align_corners=False) of (B, h, w).

    OpenCV's INTER_LINEAR uses the same half-pixel mapping and edge clamping for float
    input (tests check it against torch). One image per call: OpenCV has its own code for
    1, 3 and 4 channels, so passing the batch as channels made an image's map depend, in
    its last bits, on how many images shared its batch (a study's score must not depend on
    its neighbours; tests/test_scoring.py checks that bit for bit).
    """
    import cv2

    h, w = x.shape[1:]
    if (h, w) == tuple(size):
        return x.astype(np.float32, copy=False)
    out = np.empty((x.shape[0], size[0], size[1]), np.float32)
    for i in range(x.shape[0]):
        out[i] = cv2.resize(np.ascontiguousarray(x[i], dtype=np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return out


def feature_distance(
    feats_a: Sequence[np.ndarray],
    feats_b: Sequence[np.ndarray],
    size: tuple[int, int],
    *,
    weights: Sequence[np.ndarray] | None = None,
    eps: float = FEATURE_EPS,
    threads: int | None = None,
) -> np.ndarray:
    """LPIPS-style map: per level, unit-normalise over channels, squared difference, channel
    weights (ones by default), channel sum, bilinear upsample to ``size``; summed over levels.

    Per image, so large batches go to worker threads in chunks of a few images (whose
    arrays stay in cache): the same bits as one call on the whole batch.

    Args:
        feats_a, feats_b: per level, (B, C_l, h_l, w_l) float arrays.
        weights: per level, (C_l,) non-negative channel weights (an LPIPS linear head).
    Returns:
        (B, H, W) float32.
    """
    if len(feats_a) != len(feats_b) or not feats_a:
        raise ValueError(f"need the same, non-zero number of feature levels, got {len(feats_a)} and {len(feats_b)}")
    fa = [np.asarray(f, np.float32) for f in feats_a]
    fb = [np.asarray(f, np.float32) for f in feats_b]
    ws = None if weights is None else [np.asarray(w, np.float32)[None, :, None, None] for w in weights]
    b = fa[0].shape[0]
    return map_images(lambda sl: _feature_distance([f[sl] for f in fa], [f[sl] for f in fb], size, ws, eps), b, b * size[0] * size[1], threads=threads, chunk=4)


def _feature_distance(fa: list[np.ndarray], fb: list[np.ndarray], size: tuple[int, int], weights: list[np.ndarray] | None, eps: float) -> np.ndarray:
    total = None
    e = np.float32(eps)
    for i, (a, b) in enumerate(zip(fa, fb)):
        na = a / (np.sqrt((a * a).sum(1, keepdims=True)) + e)
        nb = b / (np.sqrt((b * b).sum(1, keepdims=True)) + e)
        d = (na - nb) ** 2
        if weights is not None:
            d = d * weights[i]
        up = upsample_bilinear(d.sum(1), size)
        total = up if total is None else total + up
    assert total is not None
    return total
