"""Evaluation metrics, following the RA paper's code (plain numpy).

Image level, per pathology set against the normal test set: AUROC, AUPRC (average
precision), FPR at 95% TPR. Localisation: a pixel threshold chosen so that at most 5% of
normal pixels exceed it; an annotation counts as detected when more than 10% of its
pixels exceed the threshold; Dice of the thresholded map against the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ConfigError


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ConfigError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if not np.isfinite(s).all():
        raise ConfigError("scores hold NaN or infinite values")
    if y.all() or not y.any():
        raise ConfigError(f"need both positives and negatives, got {int(y.sum())} positive(s) of {y.size}")
    return s, y


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with ties grouped, thresholds decreasing (as scikit-learn)."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.nonzero(np.diff(s))[0]
    idx = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (~y).sum()]
    return fpr, tpr, np.r_[np.inf, s[idx]]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def spearman(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Spearman rank correlation of two score lists (ties get their average rank)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
        return (np.bincount(inv, weights=r) / counts)[inv]

    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need two score lists of the same length >= 2, got {len(x)} and {len(y)}")
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall step) * precision, as scikit-learn."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    idx = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y)[idx]
    precision = tps / (idx + 1)
    recall = tps / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(scores: np.ndarray, labels: np.ndarray, tpr_level: float = 0.95) -> float:
    """The smallest false-positive rate at which the true-positive rate reaches tpr_level."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(fpr[np.searchsorted(tpr, tpr_level - 1e-12, side="left")])


def pixel_threshold(normal_maps: np.ndarray | Sequence[np.ndarray], fraction: float = 0.05) -> float:
    """Threshold such that at most ``fraction`` of the normal pixels exceed it."""
    v = np.concatenate([np.asarray(m, np.float64).ravel() for m in normal_maps])
    if v.size == 0:
        raise ConfigError("pixel_threshold needs at least one normal map")
    t = float(np.quantile(v, 1 - fraction, method="higher"))
    return t


def detected(amap: np.ndarray, mask: np.ndarray, threshold: float, min_fraction: float = 0.1) -> bool:
    """An annotation is detected when more than ``min_fraction`` of its pixels exceed threshold."""
    m = np.asarray(mask, bool)
    if not m.any():
        raise ConfigError("an empty mask cannot be detected or missed")
    return bool((np.asarray(amap)[m] > threshold).mean() > min_fraction)


def dice(amap: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """Dice overlap of (amap > threshold) and mask; 1.0 when both are empty."""
    p = np.asarray(amap) > threshold
    m = np.asarray(mask, bool)
    denom = p.sum() + m.sum()
    return 1.0 if denom == 0 else float(2 * (p & m).sum() / denom)


def by_type(scores: Sequence[float] | np.ndarray, types: Sequence[str], *, normal: str = "normal", threshold: float | None = None) -> dict[str, dict[str, float]]:
    """Per anomalous type: its count, AUROC against the normals, and with ``threshold`` the
    fraction of its studies flagged (score > threshold). Types sorted by name; the
    normal type is the reference, never a row."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(types, dtype=object)
    is_normal = t == normal
    out: dict[str, dict[str, float]] = {}
    for kind in sorted({str(k) for k in t[~is_normal]}):
        pick = t == kind
        row = {"n": float(pick.sum()), "auroc": float("nan")}
        if is_normal.any():
            row["auroc"] = auroc(np.r_[s[is_normal], s[pick]], np.r_[np.zeros(int(is_normal.sum()), bool), np.ones(int(pick.sum()), bool)])
        if threshold is not None:
            row["flagged"] = float(np.mean(s[pick] > threshold))
        out[kind] = row
    return out


def evaluate(
    normal_scores: np.ndarray,
    sets: dict[str, tuple[np.ndarray, list[np.ndarray] | None, list[np.ndarray] | None]],
    *,
    threshold: float | None = None,
) -> dict[str, dict[str, float]]:
    """Per pathology set: {"auroc", "auprc", "fpr95", and when maps and masks are given
    "detection_rate", "dice"}. ``sets[name] = (scores, maps or None, masks or None)``;
    ``threshold`` is the pixel threshold (from normal maps)."""
    out: dict[str, dict[str, float]] = {}
    normal_scores = np.asarray(normal_scores, np.float64)
    for name, (scores, maps, masks) in sets.items():
        s = np.r_[normal_scores, np.asarray(scores, np.float64)]
        y = np.r_[np.zeros(normal_scores.size, bool), np.ones(len(scores), bool)]
        row = {"auroc": auroc(s, y), "auprc": auprc(s, y), "fpr95": fpr_at_tpr(s, y), "n": float(len(scores))}
        if maps is not None and masks is not None and threshold is not None:
            row["detection_rate"] = float(np.mean([detected(a, m, threshold) for a, m in zip(maps, masks)]))
            row["dice"] = float(np.mean([dice(a, m, threshold) for a, m in zip(maps, masks)]))
        out[name] = row
    return out
