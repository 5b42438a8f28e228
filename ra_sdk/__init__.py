"""ra-sdk: screening medical images with Reversed Auto-Encoders.

The front door. Importing this package is cheap: it pulls in no torch, tensorrt or cupy;
backends import their heavy dependency when first used.

    >>> import ra_sdk
    >>> ra_sdk.list_models()
    ['ra-base', 'ra-small', 'ra-tiny']
"""

from ._version import __version__
from .configs import ModelConfig, get_model_config, list_models
from .errors import (
    ConfigError,
    CorruptFileError,
    MissingDependencyError,
    NotAnImageError,
    RaSdkError,
    ReadError,
    UnsupportedCodecError,
    UnsupportedFormatError,
)
from .preprocess import Preset, get_preset, list_presets


def load(engine_path=None, backend: str = "auto", device: str = "auto", **kw):  # type: ignore[no-untyped-def]
    """A warmed-up :class:`ra_sdk.screen.Screener` for ``engine_path`` (None: the bundled
    demo engine). ``screener.screen(items)`` and ``screener.screen_one(array)``."""
    from .screen import load as _load

    return _load(engine_path, backend=backend, device=device, **kw)


def list_backends() -> list[str]:
    """Runtime backends by name (availability depends on the installed extras; ``ra-sdk info``)."""
    from .runners import list_backends as _list

    return _list()


def info() -> dict:
    """Versions, devices and backends usable here (see ``ra-sdk info``)."""
    from .info import collect

    return collect()


__all__ = [
    "AccessError",
    "CheckpointError",
    "ConfigError",
    "CorruptFileError",
    "DeviceError",
    "DicomOutputError",
    "EngineError",
    "ExportError",
    "MissingDependencyError",
    "ModelConfig",
    "NoSignalError",
    "NotAnImageError",
    "Preset",
    "RaSdkError",
    "ReadError",
    "RunnerError",
    "TooLargeError",
    "UnsupportedCodecError",
    "UnsupportedFormatError",
    "__version__",
    "get_model_config",
    "get_preset",
    "info",
    "list_backends",
    "list_models",
    "list_presets",
    "load",
]
