"""Compiling and launching the ``.cu`` sources beside this file through CuPy (NVRTC).

Nothing compiles at import. The first call on a device compiles a source once and keeps
the module per device and per specialisation (the template argument is part of the
kernel's name, e.g. ``clahe_interp<unsigned short>``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..spec import CLAHE_GRAY_LEVELS, CLAHE_NBINS, box_kernel1d, gaussian_kernel1d

HERE = Path(__file__).resolve().parent
THREADS = 256
#: a NULL pointer kernel argument (an 8-byte zero)
NULL = np.uint64(0)
#: the spec's constants, as the sources expect them (ra_math.cuh refuses to compile without)
SPEC_DEFINES = (f"-DRA_CLAHE_GREY={CLAHE_GRAY_LEVELS}", f"-DRA_CLAHE_BINS={CLAHE_NBINS}")
_OPTIONS = ("--std=c++17", "--fmad=false", f"-I{HERE}", *SPEC_DEFINES)


def cupy() -> Any:
    """The cupy module, or MissingDependencyError naming the ``gpu`` extra."""
    return require("cupy", "the CUDA kernels")


@functools.cache
def _module(device_id: int, source: str, names: tuple[str, ...]) -> Any:
    cp = cupy()
    code = (HERE / source).read_text()
    return cp.RawModule(code=code, options=_OPTIONS, name_expressions=names or None)


def kernel(source: str, name: str, names: tuple[str, ...] = ()) -> Any:
    """The compiled kernel ``name`` of ``source`` on the current device."""
    cp = cupy()
    return _module(cp.cuda.Device().id, source, names).get_function(name)


def grid(n: int) -> tuple[int]:
    """One thread per element, THREADS per block."""
    return ((n + THREADS - 1) // THREADS,)


@functools.lru_cache(maxsize=32)
def _weights(device_id: int, kind: str, a: float, b: float) -> Any:
    w = gaussian_kernel1d(a, b) if kind == "gauss" else box_kernel1d(int(a))
    return cupy().asarray(w, dtype=np.float64)


def taps(kind: str, a: float, b: float = 0.0) -> tuple[Any, int]:
    """Filter taps on the device and their radius: ("gauss", sigma, truncate) or ("box", size)."""
    w = _weights(cupy().cuda.Device().id, kind, float(a), float(b))
    return w, (int(w.size) - 1) // 2
