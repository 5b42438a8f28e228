"""numpy or CuPy: the one place that tells the two apart (without importing cupy)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def is_cupy(a: Any) -> bool:
    """True for a CuPy array (checked by the type's module, so cupy is never imported here)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(a: Any) -> ModuleType:
    """cupy for CuPy arrays, numpy otherwise."""
    if is_cupy(a):
        import cupy

        return cupy
    return np


def to_host(a: Any) -> np.ndarray:
    """A numpy array of ``a`` (a device-to-host copy for CuPy arrays)."""
    return a.get() if is_cupy(a) else np.asarray(a)


def to_device_of(x: Any, like: Any) -> Any:
    """``x`` on the device ``like`` lives on (host numpy, or the current CUDA device)."""
    if is_cupy(like):
        import cupy

        return cupy.asarray(x)
    return to_host(x)
