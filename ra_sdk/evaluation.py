"""Evaluation on the synthetic pathology suite, following the paper's protocol.

The reconstruction comes in as a function, so the same code judges a torch checkpoint,
an ONNX bundle or a TensorRT engine:

    recon(images (B, 1, H, W) float32) -> x_ph (B, 1, H, W) float32
    feats(images (B, 1, H, W) float32) -> list of (B, C, h, w) arrays (for ``features``)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics
from .preprocess import Preset
from .scorer import Scorer
from .scoring import ScoreConfig, score_batch, study_score

Recon = Callable[[np.ndarray], np.ndarray]
Feats = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass
class Suite:
    """normals: (N, H, W); sets[type] = (images (M, H, W), masks (M, H, W) bool)."""

    normals: np.ndarray
    sets: dict[str, tuple[np.ndarray, np.ndarray]]


def synthetic_suite(n_normal: int = 200, n_per_type: int = 40, *, seed: int = 0, size: int = 128, types: Sequence[str] | None = None, split: str = "test") -> Suite:
    """Normals and each pathology type made from ``split``'s normals: "test" (never seen in
    training) for judging a model, "val" for choosing one while it trains."""
    from .data.augment import sample
    from .data.pathology import TYPES, make, preferred_slices

    normals = np.stack([sample(split, i, seed=seed, size=size).image for i in range(n_normal)])
    sets = {}
    for t in types or TYPES:
        pool = preferred_slices(t)
        imgs, masks = [], []
        for i in range(n_per_type):
            s = sample(split, 50_000 + 1_000 * TYPES.index(t) + i, seed=seed, size=size, slices=pool)
            img, m = make(t, s, seed=seed)
            imgs.append(img)
            masks.append(m)
        sets[t] = (np.stack(imgs), np.stack(masks))
    return Suite(normals, sets)


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def reconstruct_suite(recon: Recon, suite: Suite, batch: int = 64) -> dict[str, np.ndarray]:
    """Pseudo-healthy reconstructions of every image of the suite (key "normal" and types)."""
    out = {"normal": _batched(lambda a: recon(a[:, None])[:, 0], suite.normals, batch)}
    for t, (imgs, _) in suite.sets.items():
        out[t] = _batched(lambda a: recon(a[:, None])[:, 0], imgs, batch)
    return out


def evaluate(
    suite: Suite,
    recons: dict[str, np.ndarray],
    config: ScoreConfig,
    *,
    feats: Feats | None = None,
    local_types: Sequence[str] | None = None,
    feature_weights: Sequence[np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per pathology type for one score configuration (see ra_sdk.metrics.evaluate)."""
    from .data.pathology import LOCAL

    local = set(LOCAL if local_types is None else local_types)

    def scored(x: np.ndarray, x_ph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [score_batch(x[i : i + 64], x_ph[i : i + 64], feats, config=config, feature_weights=feature_weights) for i in range(0, len(x), 64)]
        return np.concatenate([m for m, _ in parts]), np.concatenate([s for _, s in parts])

    normal_maps, normal_scores = scored(suite.normals, recons["normal"])
    threshold = metrics.pixel_threshold(normal_maps)
    sets = {}
    for t, (imgs, masks) in suite.sets.items():
        m, s = scored(imgs, recons[t])
        sets[t] = (s, list(m) if t in local else None, list(masks) if t in local else None)
    res = metrics.evaluate(normal_scores, sets, threshold=threshold)
    return res


def summarise(res: dict[str, dict[str, float]]) -> dict[str, float]:
    """Means over local types (detection rate, Dice, AUROC) and global types (AUROC)."""
    from .data.pathology import GLOBAL, LOCAL

    loc = [res[t] for t in LOCAL if t in res]
    glo = [res[t] for t in GLOBAL if t in res]
    return {
        "local_detection_rate": float(np.mean([r["detection_rate"] for r in loc if "detection_rate" in r])) if loc else float("nan"),
        "local_dice": float(np.mean([r["dice"] for r in loc if "dice" in r])) if loc else float("nan"),
        "local_auroc": float(np.mean([r["auroc"] for r in loc])) if loc else float("nan"),
        "global_auroc": float(np.mean([r["auroc"] for r in glo])) if glo else float("nan"),
        "mean_auroc": float(np.mean([r["auroc"] for r in res.values()])),
    }


#: what the columns of :func:`format_table` mean (the same words as the demo's table)
LEGEND = (
    "AUROC/AUPRC/FPR95: study scores of the type against the normal studies. det: fraction of annotated lesions "
    "with more than 10% of their pixels above the pixel threshold (the paper's rule), here the threshold that 5% of "
    "these normals' pixels exceed (the paper's protocol; ra-sdk demo uses the engine's calibrated one). "
    "Dice: overlap of the thresholded map with the lesion mask."
)


def format_table(res: dict[str, dict[str, float]]) -> str:
    lines = [f"{'type':<22}{'AUROC':>7}{'AUPRC':>7}{'FPR95':>7}{'det':>7}{'Dice':>7}"]
    for t, r in res.items():
        det = f"{r['detection_rate']:.3f}" if "detection_rate" in r else "-"
        dc = f"{r['dice']:.3f}" if "dice" in r else "-"
        lines.append(f"{t:<22}{r['auroc']:>7.3f}{r['auprc']:>7.3f}{r['fpr95']:>7.3f}{det:>7}{dc:>7}")
    import textwrap

    return "\n".join([*lines, "", *textwrap.wrap(LEGEND, 100)])


def load_labelled_studies(root: str | Path, preset: Preset) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """The demo-studies folder as model input: (images (N, S, S), study index of each image,
    label rows in study order). ``root`` holds studies/ and labels.csv."""

    from .data.demo_studies import read_labels
    from .io import discover, read_study
    from .preprocess import prepare_stack

    root = Path(root)
    rows = read_labels(root / "labels.csv")
    by_id = {s.id: s for s in discover(root / "studies")}
    imgs, owner = [], []
    for i, row in enumerate(rows):
        stack = prepare_stack(read_study(by_id[row["study"]], apply_voi=preset.apply_voi).pixels, preset, where=row["study"])
        imgs.append(stack.images)
        owner += [i] * len(stack.images)
    return np.concatenate(imgs), np.asarray(owner), rows


def study_scores(image_scores: np.ndarray, owner: np.ndarray, n: int, config: ScoreConfig | None = None) -> np.ndarray:
    """Each study's score from its slices' scores, by the config's study aggregation
    (:func:`ra_sdk.scoring.study_score`, as screening does)."""
    cfg = config or ScoreConfig()
    s = np.asarray(image_scores, np.float64)
    return np.array([study_score(s[owner == i], how=cfg.study_aggregation, k=cfg.study_k)[0] for i in range(n)])


def evaluate_studies(root: str | Path, scorer: Scorer, *, preset: Preset) -> dict[str, dict[str, float]]:
    """The paper's metrics per pathology type on a demo-studies folder (labels.csv, masks/),
    scored by ``scorer`` (the same path as screening): study score by the scorer's study
    aggregation; localisation on the labelled slice of each study, with the pixel threshold
    from these normals' maps (the paper's protocol)."""
    from .data.pathology import LOCAL
    from .io import read_nifti, read_raster

    root = Path(root)
    images, owner, rows = load_labelled_studies(root, preset)
    maps, image_scores, _ = scorer.score(images, recons=False)
    assert maps is not None
    s = study_scores(image_scores, owner, len(rows), scorer.config)
    normal_idx = [i for i, r in enumerate(rows) if r["type"] == "normal"]
    threshold = metrics.pixel_threshold([maps[owner == i] for i in normal_idx])
    sets: dict[str, tuple[np.ndarray, list[np.ndarray] | None, list[np.ndarray] | None]] = {}
    for t in sorted({r["type"] for r in rows} - {"normal"}):
        idx = [i for i, r in enumerate(rows) if r["type"] == t]
        ms, ks = [], []
        if t in LOCAL:
            for i in idx:
                k = int(rows[i]["slice"] or 0)
                mask_path = root / rows[i]["mask"]
                mask = (read_nifti(mask_path).pixels[k] if mask_path.name.endswith(".nii.gz") else read_raster(mask_path).pixels[0]) > 0
                study_maps = maps[owner == i]
                if k < len(study_maps) and mask.any():
                    ms.append(study_maps[k])
                    ks.append(mask)
        sets[t] = (s[idx], ms or None, ks or None)
    return metrics.evaluate(s[normal_idx], sets, threshold=threshold)
