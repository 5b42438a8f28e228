"""The RA network (DESIGN.md section 2): a Soft-IntroVAE-style residual encoder/decoder
whose encoder exposes its embedding after every pooling step.

A runtime room below the trainer, the exporter and the torch runner, which all import it
(lazily: importing this module imports torch, ``import ra_sdk`` never does). It also
rebuilds a network from an engine file, whose ``recon`` graph keeps every weight by name.

Shapes for ``ra-base`` at 128x128: embeddings (B, 64, 64, 64), (B, 128, 32, 32),
(B, 256, 16, 16), (B, 512, 8, 8), (B, 512, 4, 4); mu, logvar (B, 128); x_rec (B, 1, 128, 128).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .configs import ModelConfig
from .errors import EngineError

if TYPE_CHECKING:
    from .engine import Engine


class ResBlock(nn.Module):
    """conv3x3 - BN - LeakyReLU(0.2) - conv3x3 - BN, plus a (1x1 conv) skip, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, ch[0], 5, padding=2, bias=False),
            nn.BatchNorm2d(ch[0]),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.stages = nn.ModuleList(ResBlock(a, b) for a, b in itertools.pairwise(ch))
        self.pool = nn.AvgPool2d(2)
        self.last = ResBlock(ch[-1], ch[-1])
        self.side = cfg.image_size // 2 ** len(ch)
        if self.side < 1 or cfg.image_size % 2 ** len(ch):
            raise ValueError(f"image size {cfg.image_size} must be divisible by 2^{len(ch)}")
        self.fc = nn.Linear(ch[-1] * self.side * self.side, 2 * cfg.zdim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, H, W) -> mu (B, zdim), logvar (B, zdim), embeddings (one per scale)."""
        h = self.pool(self.stem(x))
        emb = [h]
        for stage in self.stages:
            h = self.pool(stage(h))
            emb.append(h)
        h = self.last(h)
        mu, logvar = self.fc(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar, emb


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels
        self.side = cfg.image_size // 2 ** len(ch)
        self.c_last = ch[-1]
        self.fc = nn.Sequential(nn.Linear(cfg.zdim, ch[-1] * self.side * self.side), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        prev = ch[-1]
        for c in reversed(ch):
            blocks += [ResBlock(prev, c), nn.Upsample(scale_factor=2, mode="nearest")]
            prev = c
        blocks += [ResBlock(prev, prev), nn.Conv2d(prev, cfg.in_channels, 5, padding=2), nn.Sigmoid()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(z.shape[0], self.c_last, self.side, self.side))


class RANet(nn.Module):
    """Encoder + decoder. ``reconstruct`` is the deterministic inference path (z = mu)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + eps * torch.exp(0.5 * logvar)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, H, W) in [0, 1] -> (x_ph = D(mu(E(x))), embeddings of x)."""
        mu, _, emb = self.encoder(x)
        return self.decoder(mu), emb

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's embeddings of x (the ``features`` perceptual network)."""
        return self.encoder(x)[2]


class ReconNet(nn.Module):
    """x -> (x_ph, embeddings of x): the ``recon`` network that is exported."""

    def __init__(self, net: RANet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, _, emb = self.net.encoder(x)
        return (self.net.decoder(mu), *emb)


class FeaturesNet(nn.Module):
    """x -> embeddings of x: the ``features`` network (the model's own perceptual network)."""

    def __init__(self, net: RANet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net.encoder(x)[2])


def network_module(net: RANet, network: str) -> nn.Module:
    """The exported/served module for ``network``: "recon" or "features" (eval mode)."""
    if network not in ("recon", "features"):
        raise ValueError(f"unknown network {network!r}; valid: recon, features")
    return (ReconNet(net) if network == "recon" else FeaturesNet(net)).eval()


def build(cfg: ModelConfig) -> RANet:
    return RANet(cfg)


def state_dict_from_onnx(blob: bytes, cfg: ModelConfig, *, where: str = "engine") -> dict[str, torch.Tensor]:
    """The state dict of ``cfg``'s network from an exported fp32 ``recon`` ONNX graph.

    Every parameter and BN statistic is an initializer (or an Identity of one) named
    ``net.<state-dict key>``; BN step counters (``num_batches_tracked``, unused at
    inference) come back as 0. Raises EngineError when a weight is missing.
    """
    import numpy as np

    from ._optional import require

    onnx = require("onnx", "reading weights from an engine file")
    from onnx import numpy_helper

    try:
        graph = onnx.load_from_string(blob).graph
    except Exception as err:  # protobuf's DecodeError and friends: untrusted bytes
        raise EngineError(f"{where}: its recon network is not a readable ONNX graph ({type(err).__name__})") from None
    init = {i.name: i for i in graph.initializer}
    # The exporter merges weights with equal values into one initializer and keeps each
    # merged weight's name as an Identity of it (e.g. the all-ones BN weights of a new net).
    for node in graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in init:
            init.setdefault(node.output[0], init[node.input[0]])
    weights: dict[str, torch.Tensor] = {}
    for key, ref in build(cfg).state_dict().items():
        if key.endswith("num_batches_tracked"):
            weights[key] = torch.zeros_like(ref)
        elif f"net.{key}" in init:
            arr = np.array(numpy_helper.to_array(init[f"net.{key}"]))
            if tuple(arr.shape) != tuple(ref.shape):
                raise EngineError(f"{where}: weight {key!r} has shape {tuple(arr.shape)}, the model config needs {tuple(ref.shape)}")
            weights[key] = torch.from_numpy(arr)
        else:
            raise EngineError(f"{where}: its recon network does not keep the weight {key!r} by name (exported by an older ra-sdk); re-export it from its checkpoint")
    return weights


def load_engine_network(engine: Engine) -> RANet:
    """The PyTorch network of an engine file (eval mode, CPU): from its ``model.safetensors``
    member when present, else from the initializers of its fp32 ``recon`` ONNX graph."""
    from ._optional import require

    cfg = engine.meta.model
    if "model.safetensors" in engine.members:
        require("safetensors", "reading weights from an engine file")
        from safetensors.torch import load as load_st

        weights = load_st(engine.members["model.safetensors"])
    elif engine.meta.kind == "onnx":
        weights = state_dict_from_onnx(engine.network("recon")[1], cfg, where=str(engine.path))
    else:
        raise EngineError(f"{engine.path}: a {engine.meta.kind} engine holds no PyTorch weights; use the ONNX bundle it was built from")
    net = build(cfg)
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise EngineError(f"{engine.path}: weights do not match the model config ({str(err).splitlines()[0]})") from None
    return net.eval()


def numpy_functions(net: RANet) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], list[np.ndarray]]]:
    """``(recon, feats)`` of a network on the CPU over numpy (B, 1, H, W) float32 arrays: the
    callables :mod:`ra_sdk.evaluation` takes (reconstructions; the encoder's embeddings)."""

    def recon(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net.reconstruct(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()

    def feats(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [e.numpy() for e in net.embed(torch.from_numpy(np.ascontiguousarray(x)))]

    return recon, feats
