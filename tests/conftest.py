"""Shared fixtures and the device markers (needs_cuda, needs_trt)."""

from __future__ import annotations

import functools

import numpy as np
import pytest


@functools.lru_cache(maxsize=1)
def cuda_available() -> tuple[bool, str]:
    try:
        import cupy
    except ImportError:
        return False, "cupy not installed (pip install 'ra-sdk[gpu]')"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        return False, f"no usable CUDA device ({type(err).__name__})"
    return (n > 0, "no CUDA device") if n == 0 else (True, "")


@functools.lru_cache(maxsize=1)
def trt_available() -> tuple[bool, str]:
    try:
        import tensorrt as trt

        trt.Logger  # noqa: B018 - the stubs' empty namespace package has no Logger
    except (ImportError, AttributeError):
        return False, "tensorrt not installed (pip install 'ra-sdk[trt]')"
    ok, why = cuda_available()
    return ok, why


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "needs_cuda" in item.keywords:
            ok, why = cuda_available()
            if not ok:
                item.add_marker(pytest.mark.skip(reason=f"needs_cuda: {why}"))
        if "needs_trt" in item.keywords:
            ok, why = trt_available()
            if not ok:
                item.add_marker(pytest.mark.skip(reason=f"needs_trt: {why}"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
