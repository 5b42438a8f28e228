"""Lazy imports of optional heavy dependencies, with errors that name the extra."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from .errors import MissingDependencyError

#: import name -> (distribution shown to the user, extra that provides it)
EXTRA_OF = {
    "torch": ("torch", "train"),
    "onnx": ("onnx", "train"),
    "safetensors": ("safetensors", "train"),
    "tensorrt": ("tensorrt", "trt"),
    "cupy": ("cupy", "gpu"),
    "skimage": ("scikit-image", "dev"),
    "scipy": ("scipy", "dev"),
    "highdicom": ("highdicom", "dicom"),
    "ray": ("ray[data]", "ray"),
    "pynetdicom": ("pynetdicom", "node"),
}


def is_installed(name: str) -> bool:
    """True when ``name`` can be imported, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    # A bare namespace package (e.g. the folder tensorrt-stubs leaves) is not the package.
    return spec is not None and spec.origin is not None


def require(name: str, purpose: str = "") -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` naming its extra."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        dist, extra = EXTRA_OF.get(name, (name, "dev"))
        raise MissingDependencyError(dist, extra, purpose) from err


def import_onnxruntime() -> ModuleType:
    """onnxruntime with its telemetry off.

    ONNX Runtime 1.2x on Linux records a device id and events (Python path, OS, CPU) in
    ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` unless ``ORT_DISABLE_TELEMETRY`` is
    set before the library loads; ``disable_telemetry_events()`` does not stop it. A
    medical tool writes nothing outside its output folder, so the variable is set here,
    first (a user's explicit setting wins).
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return importlib.import_module("onnxruntime")
