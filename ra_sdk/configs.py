"""Registered model configurations (plain data; the torch networks live in ra_sdk.train)."""

from __future__ import annotations

import dataclasses
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
