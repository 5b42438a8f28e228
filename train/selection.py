"""Model selection on what matters: validation AUROC on synthetic anomalies.

The pathology generator is applied to *validation* normals (never test normals); the
network in training is scored by the product's own scoring path (``Scorer`` over a torch
runner of the in-memory network), with the score configuration the engine will ship. The
trainer keeps ``best`` by this AUROC; the validation MSE stays in the log.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ra_sdk import metrics
from ra_sdk.scoring import ScoreConfig


class ValidationAUROC:
    """AUROC of each pathology type against the validation normals, and their mean."""

    def __init__(self, *, n_normal: int = 64, n_per_type: int = 8, seed: int = 0, size: int = 128, score: ScoreConfig | None = None, batch_size: int = 64):
        from ra_sdk.evaluation import synthetic_suite

        self.suite = synthetic_suite(n_normal, n_per_type, seed=seed, size=size, split="val")
        self.score = score or ScoreConfig(perceptual="features", aggregation="topk", topk=0.05, foreground=0.05)
        self.batch_size = batch_size
        self.images = np.concatenate([self.suite.normals, *[imgs for imgs, _ in self.suite.sets.values()]])
        self.types = ["normal"] * len(self.suite.normals) + [t for t, (imgs, _) in self.suite.sets.items() for _ in range(len(imgs))]

    def __call__(self, net: Any) -> dict[str, float]:
        """{"mean": mean AUROC over types, "<type>": AUROC, ...} of ``net`` (left in eval mode)."""
        from ra_sdk.runners.torch import TorchRunner
        from ra_sdk.scorer import Scorer

        device = str(next(net.parameters()).device.type)
        recon = TorchRunner(None, net=net, device=device, cuda_graphs=False)
        feats = TorchRunner(None, net=net, network="features", device=device, cuda_graphs=False) if self.score.perceptual == "features" else None
        with Scorer.from_runners(self.score, recon, feats, batch_size=self.batch_size) as scorer:
            _, scores, _ = scorer.score(self.images, maps=False, recons=False)
        per_type = metrics.by_type(scores, self.types)
        out = {t: r["auroc"] for t, r in per_type.items()}
        out["mean"] = float(np.mean(list(out.values())))
        return out
