"""Registered model configurations (plain data; the torch networks live in ra_sdk.train)."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


def check_keys(cls: type, d: dict[str, Any], what: str) -> None:
    """Refuse keys a dataclass does not have, listing the valid ones (configs from files)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown {what} keys {sorted(unknown)}; valid keys: {sorted(known)}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an RA-style auto-encoder (DESIGN.md section 2)."""

    name: str
    channels: tuple[int, ...] = (64, 128, 256, 512, 512)  # one entry per scale
    zdim: int = 128
    image_size: int = 128
    in_channels: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        check_keys(cls, d, "model config")
        d = dict(d)
        d["channels"] = tuple(d.get("channels", ()))
        return cls(**d)


def macs_per_image(cfg: ModelConfig, network: str = "recon") -> int:
    """Multiply-adds of one image through ``network`` ("recon": encoder + decoder;
    "features": the encoder), counting convolutions and linear layers (the work; BatchNorm,
    activations, pooling and upsampling are a few per pixel and left out), from the
    architecture of DESIGN.md section 2."""
    ch, s, z = cfg.channels, cfg.image_size, cfg.zdim

    def res(cin: int, cout: int, side: int) -> int:
        return side * side * (9 * cin * cout + 9 * cout * cout + (cin * cout if cin != cout else 0))

    side = s
    enc = side * side * 25 * cfg.in_channels * ch[0]  # stem conv5x5, then pool
    side //= 2
    for a, b in itertools.pairwise(ch):
        enc += res(a, b, side)
        side //= 2
    enc += res(ch[-1], ch[-1], side) + ch[-1] * side * side * 2 * z  # last block, fc -> (mu, logvar)
    if network == "features":
        return enc
    dec = z * ch[-1] * side * side
    prev = ch[-1]
    for c in reversed(ch):
        dec += res(prev, c, side)
        prev, side = c, side * 2
    dec += res(prev, prev, side) + side * side * 25 * prev * cfg.in_channels
    return enc + dec


_MODELS: dict[str, ModelConfig] = {}


def register_model(cfg: ModelConfig) -> ModelConfig:
    if cfg.name in _MODELS:
        raise ConfigError(f"model config {cfg.name!r} is already registered")
    _MODELS[cfg.name] = cfg
    return cfg


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_model_config(name: str) -> ModelConfig:
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(list_models())}") from None


register_model(ModelConfig("ra-base", channels=(64, 128, 256, 512, 512), zdim=128))
register_model(ModelConfig("ra-small", channels=(32, 64, 128, 256, 256), zdim=128))
register_model(ModelConfig("ra-tiny", channels=(16, 32, 64, 128, 128), zdim=128))
