"""Images -> engine -> score: the one scoring path of screening, calibration and evaluation.

    scorer = Scorer(read_engine(path))                       # runners chosen by backend/device
    maps, scores, x_ph = scorer.score(images)                # images (N, H, W) float32 in [0, 1]
    _, scores, _ = scorer.score(images, maps=False, recons=False)   # scores only

On a GPU the arrays stay on the device; only what the caller asks for comes back to the host.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ._arrays import array_module, to_device_of, to_host
from .engine import Engine
from .runners import Runner, make_runner
from .scoring import ScoreConfig, clahe_of_input, foreground_mask, score_batch_later
from .scoring.cpu.threads import MIN_PIXELS, side_pool

#: images per chunk of the CPU pipeline (score_batch); see benchmarks/bench_int8.py "overlap"
PIPELINE_CHUNK = 8


class Scorer:
    """Runs the recon network (and the features network when the score needs it) and the
    score of the engine's scoring config."""

    def __init__(self, engine: Engine, *, backend: str = "auto", device: str = "auto", precision: str = "fp32", batch_size: int = 32, threads: int = 0):
        recon = make_runner(engine, backend=backend, device=device, precision=precision, threads=threads)
        features = None
        if engine.meta.score.perceptual == "features":
            features = make_runner(engine, backend=recon.name, device=recon.device, network="features", precision=recon.precision, threads=threads)
        self._setup(engine.meta.score, recon, features, batch_size)
        self.engine: Engine | None = engine

    @classmethod
    def from_runners(cls, config: ScoreConfig, recon: Runner, features: Runner | None = None, *, batch_size: int = 32) -> Scorer:
        """A scorer over runners built elsewhere (e.g. a checkpoint's network in memory)."""
        self = cls.__new__(cls)
        self._setup(config, recon, features, batch_size)
        self.engine = None
        return self

    def _setup(self, config: ScoreConfig, recon: Runner, features: Runner | None, batch_size: int) -> None:
        if config.perceptual == "features" and features is None:
            raise ValueError("the features perceptual map needs a features runner")
        self.config = config
        self.recon = recon
        self.features = features
        self.batch_size = max(1, min(int(batch_size), recon.max_batch))
        #: images per network call in the CPU pipeline of score_batch (measured: bench_int8
        #: "overlap"); 0 scores every batch in the calling thread alone
        self.pipeline_chunk = PIPELINE_CHUNK

    def score_batch(self, x: Any) -> tuple[Any, Any, Any]:
        """x (B, H, W) -> (maps (B, H, W), scores (B,), x_ph (B, H, W)), on the runner's device.

        On the CPU, a batch of at least ``MIN_PIXELS`` pixels is scored as a pipeline: the
        networks run on the calling thread, chunk after chunk of ``pipeline_chunk`` images,
        while side threads (one on a 2-core CPU) do the host steps (the foreground mask and
        C(x) during the reconstruction, C(x_ph) and the saliency terms during the feature
        passes, a chunk's map and scores during the next chunk's networks). The networks
        leave part of the cores idle; ``benchmarks/bench_int8.py``, section "overlap",
        measures the gain. Each image goes through the same steps on the same data, so the
        same bits (tests hold it); a smaller batch (``screen_one``) runs in the calling
        thread alone.
        """
        on_cpu = self.recon.device == "cpu" and (self.features is None or self.features.device == "cpu")
        if not (self.pipeline_chunk > 0 and on_cpu and isinstance(x, np.ndarray) and x.size >= MIN_PIXELS):
            return self._score_later(x, None)()
        side = side_pool()
        c = self.pipeline_chunk
        parts = [later() for later in [self._score_later(x[i : i + c], side) for i in range(0, len(x), c)]]
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]

    def _score_later(self, x: Any, side: Executor | None) -> Callable[[], tuple[Any, Any, Any]]:
        cfg = self.config
        mask = clahe_x = None
        if side is not None:  # functions of x alone: made while the reconstruction runs
            if cfg.foreground > 0:
                mask = side.submit(foreground_mask, x, cfg.foreground).result
            if cfg.use_clahe:
                clahe_x = side.submit(clahe_of_input, x).result
        out = self.recon.infer({"x": x[:, None]})
        x_ph = out["x_ph"][:, 0]
        if type(x_ph) is not type(x):  # a GPU runner fed from host memory
            x = to_device_of(x, x_ph)
        feats = None
        if self.features is not None:
            emb_x = _levels(out)
            xp = array_module(x)
            features = self.features

            def feats(images: Any) -> list[Any]:
                # The recon network already gave the embeddings of x: one encoder pass
                # serves the reconstruction and the perceptual map P(x_ph, x).
                if images.shape == (x.shape[0], 1, *x.shape[1:]) and bool(xp.array_equal(images[:, 0], x)):
                    return emb_x
                return _levels(features.infer({"x": images}))

        result = score_batch_later(x, x_ph, feats, cfg, mask, None, clahe_x, side)

        def done() -> tuple[Any, Any, Any]:
            maps, scores = result()
            return maps, scores, x_ph

        return done

    def score(self, images: np.ndarray, *, maps: bool = True, recons: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """All images in batches: (maps or None, scores (N,) float64, reconstructions or None),
        numpy; maps and reconstructions come back only when asked for."""
        m_out, s_out, r_out = [], [], []
        for i in range(0, len(images), self.batch_size):
            m, s, r = self.score_batch(images[i : i + self.batch_size])
            s_out.append(to_host(s).astype(np.float64, copy=False))
            if maps:
                m_out.append(to_host(m))
            if recons:
                r_out.append(to_host(r))
        return (np.concatenate(m_out) if maps else None), np.concatenate(s_out), (np.concatenate(r_out) if recons else None)

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
