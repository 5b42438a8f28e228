"""Images -> engine -> scoring: the part of screening that needs no files.

    scorer = Scorer(read_engine(path))                  # runners chosen by backend/device
    maps, scores, x_ph = scorer.score(images)           # images (N, H, W) float32 in [0, 1]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .engine import Engine
from .runners import Runner, make_runner
from .scoring import anomaly_map, image_score


class Scorer:
    """Runs the recon network (and the features network when the score needs it) and the
    score of the engine's scoring config. Arrays stay on the GPU when the runner is there."""

    def __init__(self, engine: Engine, *, backend: str = "auto", device: str = "auto", precision: str = "fp32", batch_size: int = 32):
        self.engine = engine
        self.config = engine.meta.score
        self.batch_size = batch_size
        self.recon: Runner = make_runner(engine, backend=backend, device=device, precision=precision)
        self.features: Runner | None = None
        if self.config.perceptual == "features":
            self.features = make_runner(engine, backend=self.recon.name, device=self.recon.device, network="features", precision=precision)

    def _feats(self, x: Any) -> list[Any]:
        assert self.features is not None
        return _levels(self.features.infer({"x": x}))

    def score_batch(self, x: Any) -> tuple[Any, Any, Any]:
        """x (B, H, W) -> (maps (B, H, W), scores (B,), x_ph (B, H, W))."""
        x4 = x[:, None]
        out = self.recon.infer({"x": x4})
        x_ph = out["x_ph"][:, 0]
        if type(x_ph) is not type(x):  # a GPU runner fed from host memory
            x = _to_same(x, x_ph)
        feats = None
        if self.features is not None:
            emb_x = _levels(out)
            xp = _array_module(x)

            def feats(images: Any) -> list[Any]:
                # The recon network already gave the embeddings of x: one encoder pass
                # serves the reconstruction and the perceptual map P(x_ph, x).
                if images.shape == (x.shape[0], 1, *x.shape[1:]) and bool(xp.array_equal(images[:, 0], x)):
                    return emb_x
                return self._feats(images)

        maps = anomaly_map(x, x_ph, feats, config=self.config)
        scores = image_score(maps, aggregation=self.config.aggregation, topk=self.config.topk)
        return maps, scores, x_ph

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All images in batches; numpy results."""
        maps, scores, recs = [], [], []
        for i in range(0, len(images), self.batch_size):
            m, s, r = self.score_batch(images[i : i + self.batch_size])
            maps.append(_host(m))
            scores.append(_host(s))
            recs.append(_host(r))
        return np.concatenate(maps), np.concatenate(scores), np.concatenate(recs)

    def close(self) -> None:
        self.recon.close()
        if self.features:
            self.features.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _levels(out: dict[str, Any]) -> list[Any]:
    """emb0, emb1, ... of a network's outputs, in order."""
    return [out[k] for k in sorted((k for k in out if k.startswith("emb")), key=lambda k: int(k[3:]))]


def _array_module(a: Any) -> Any:
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def _host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") and type(a).__module__.startswith("cupy") else np.asarray(a)


def _to_same(x: Any, like: Any) -> Any:
    if type(like).__module__.startswith("cupy"):
        import cupy

        return cupy.asarray(x)
    return _host(x)
