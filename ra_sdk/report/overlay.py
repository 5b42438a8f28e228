"""Pictures of a result: the anomaly map as a heatmap over the image, and the three-panel
preview (input | pseudo-healthy reconstruction | overlay) that reports and ``--save-maps``
show. Pure numpy/OpenCV; RGB uint8 out."""

from __future__ import annotations

import numpy as np


def driving_index(slices: np.ndarray | None, max_slice: int | None, maps: np.ndarray) -> int:
    """Position, among a study's screened slices, of the slice that drove its score
    (``max_slice`` is an index in the study); the slice with the hottest map otherwise."""
    if slices is not None and max_slice is not None:
        where = np.nonzero(np.asarray(slices) == max_slice)[0]
        if where.size:
            return int(where[0])
    return int(np.argmax([float(m.max()) for m in maps]))


def heat_overlay(grey: np.ndarray, amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """RGB uint8: a grey image in [0, 1] with the anomaly map blended in as a heatmap
    (saturating at twice the pixel threshold, transparent below half of it) and the
    region above the threshold outlined in cyan."""
    import cv2

    thr = pixel_threshold if np.isfinite(pixel_threshold) and pixel_threshold > 0 else max(float(amap.max()), 1e-12) / 2
    level = np.clip(amap / (2.0 * thr), 0.0, 1.0)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1].astype(np.float32)
    g = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.float32)[..., None], 3, -1)
    alpha = (0.65 * np.clip((amap - 0.5 * thr) / thr, 0.0, 1.0))[..., None]
    rgb = np.ascontiguousarray((g * (1 - alpha) + heat * alpha).astype(np.uint8))
    mask = (amap > thr).astype(np.uint8)
    if mask.any():
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, (0, 255, 255), max(1, min(rgb.shape[:2]) // 256))
    return rgb


def preview_panels(image: np.ndarray, recon: np.ndarray, amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """(H, 3W, 3) RGB uint8: input | pseudo-healthy reconstruction | heatmap overlay."""

    def grey(a: np.ndarray) -> np.ndarray:
        return np.repeat((np.clip(a, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)

    return np.concatenate([grey(image), grey(recon), heat_overlay(image, amap, pixel_threshold)], 1)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf)


def encode_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return bytes(buf)
