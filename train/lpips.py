"""LPIPS (SqueezeNet-1.1 with linear heads) as a perceptual network for the ``features``
map (DESIGN.md 3.2), loaded only from local weight files the user provides.

    net, weights = load_lpips("squeezenet1_1.safetensors", "lpips_squeeze_heads.pth")
    maps = scoring.anomaly_map(x, x_ph, net.features_fn(), feature_weights=weights, ...)

Backbone keys follow torchvision's ``squeezenet1_1`` (``features.N.*``); head keys follow
the LPIPS release (``linK.model.1.weight``, shape (1, C, 1, 1)). Files are read with
safetensors or ``torch.load(weights_only=True)``: never unpickled as code.
Inputs in [0, 1] are scaled to [-1, 1], grey replicated to 3 channels, then LPIPS's
scaling layer is applied. Levels: 64, 128, 256, 384, 384, 512, 512 channels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError

CHANNELS = (64, 128, 256, 384, 384, 512, 512)
#: LPIPS slices over the SqueezeNet feature modules: [0:2], [2:5], [5:8], [8:10], [10:11], [11:12], [12:13]
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13))
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1)


class LPIPSSqueeze(nn.Module):
    """SqueezeNet-1.1 features cut into LPIPS's seven levels."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, 1, H, W) in [0, 1] -> seven feature maps."""
        h = ((x * 2 - 1).expand(-1, 3, -1, -1) - self.shift) / self.scale
        out = []
        modules = list(self.features)
        for a, b in SLICES:
            for m in modules[a:b]:
                h = m(h)
            out.append(h)
        return out

    def features_fn(self) -> Callable[[Any], list[np.ndarray]]:
        """numpy (B, 1, H, W) -> list of numpy feature maps (the ``feats`` of ra_sdk.scoring)."""

        def fn(images: Any) -> list[np.ndarray]:
            with torch.no_grad():
                return [f.numpy() for f in self(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))]

        return fn


def _read(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such weights file") from None
    except Exception as err:
        raise CheckpointError(f"{path}: cannot load weights safely ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat dictionary of tensors")
    return state


def load_lpips(backbone: str | Path, heads: str | Path) -> tuple[LPIPSSqueeze, list[np.ndarray]]:
    """(network in eval mode, per-level non-negative channel weights) from local files."""
    net = LPIPSSqueeze()
    state = {k: v for k, v in _read(backbone).items() if k.startswith("features.")}
    missing = net.load_state_dict(state, strict=False).missing_keys
    missing = [k for k in missing if k not in ("shift", "scale")]
    if missing:
        raise CheckpointError(f"{backbone}: not a SqueezeNet-1.1 state dict (missing {missing[:3]}...)")
    head_state = _read(heads)
    weights = []
    for i, c in enumerate(CHANNELS):
        w = head_state.get(f"lin{i}.model.1.weight")
        if w is None or w.numel() != c:
            raise CheckpointError(f"{heads}: no LPIPS head lin{i} with {c} channels")
        weights.append(w.reshape(-1).numpy().astype(np.float32))
    return net.eval(), weights
