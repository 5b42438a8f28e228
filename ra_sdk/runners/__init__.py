"""Runtime backends behind one interface (:class:`~ra_sdk.runners.base.Runner`): a context
manager with ``infer(named inputs) -> named outputs``, inputs checked at the boundary.

| backend       | module          | needs                                   | devices |
| onnxruntime   | onnxruntime.py  | core install                            | CPU; CUDA / TensorRT EPs with onnxruntime-gpu |
| torch         | torch.py        | the ``train`` extra; weights from the engine file | CPU; CUDA (CUDA graphs) |
| tensorrt      | tensorrt.py     | the ``trt`` and ``gpu`` extras, a .plan built for this GPU | CUDA |

On CPU, outputs are numpy arrays. On a GPU the torch and tensorrt runners return CuPy
arrays that stay on the device (DLPack, no host copy), ready for the CUDA scoring kernels.
Backend modules are imported when first used, never at ``import ra_sdk``.
"""

from __future__ import annotations

import importlib
import logging

from .._optional import is_installed
from ..engine import Engine
from ..errors import ConfigError, DeviceError
from ..info import cuda_driver
from .base import Runner, check_inputs

log = logging.getLogger(__name__)

#: backend name -> (module, class): imported on first use
BACKENDS = {
    "onnxruntime": ("onnxruntime", "OnnxRuntimeRunner"),
    "torch": ("torch", "TorchRunner"),
    "tensorrt": ("tensorrt", "TensorRTRunner"),
}
DEVICES = ("auto", "cpu", "cuda", "tensorrt")


def list_backends() -> list[str]:
    return list(BACKENDS)


def runner_class(backend: str) -> type[Runner]:
    """The Runner subclass of ``backend`` (its module is imported now)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; valid: {', '.join(list_backends())}")
    module, cls = BACKENDS[backend]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)  # type: ignore[no-any-return]


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if cuda_driver()[0] and (is_installed("torch") or is_installed("cupy")) else "cpu"
    if device in ("cuda", "tensorrt") and not cuda_driver()[0]:
        raise DeviceError(f"device {device!r} requested but {cuda_driver()[1]}")
    return device


PRECISIONS = ("auto", "fp32", "fp16", "int8")


def int8_ready(engine: Engine) -> bool:
    """The engine holds int8 networks whose fidelity passed the bar at export."""
    q = (engine.meta.source or {}).get("int8") or {}
    return bool(q.get("passed")) and any(k.endswith("_int8") for k in engine.meta.networks)


def resolve_precision(engine: Engine, backend: str, device: str, precision: str) -> str:
    """"auto": int8 with ONNX Runtime on a CPU with int8 dot-product instructions (VNNI)
    when the engine's int8 networks passed the fidelity bar at export; fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    from ..info import cpu_int8_dot

    return "int8" if backend == "onnxruntime" and device == "cpu" and cpu_int8_dot() and int8_ready(engine) else "fp32"


def make_runner(engine: Engine, *, backend: str = "auto", device: str = "auto", network: str = "recon", precision: str = "fp32", threads: int = 0) -> Runner:
    """The runner for ``engine``; "auto" picks tensorrt for .plan files, else torch on a GPU
    (the engine's weights rebuild the network), else onnxruntime; precision "auto" as
    :func:`resolve_precision` says. ``threads``: ONNX Runtime's intra-op threads (0: one
    per core); the other backends ignore it."""
    dev = resolve_device(device)
    if backend == "auto":
        if engine.meta.kind == "tensorrt":
            backend = "tensorrt"
        elif dev == "cuda" and is_installed("torch") and ("model.safetensors" in engine.members or is_installed("onnx")):
            backend = "torch"
        else:
            backend = "onnxruntime"
    cls = runner_class(backend)
    precision = resolve_precision(engine, backend, dev, precision)
    log.info("backend %s on %s for %s (%s)", backend, dev, network, precision)
    if backend == "onnxruntime" and threads:
        return cls(engine, network=network, device=dev, precision=precision, threads=threads)  # type: ignore[call-arg]
    return cls(engine, network=network, device=dev, precision=precision)


__all__ = ["BACKENDS", "PRECISIONS", "Runner", "check_inputs", "int8_ready", "list_backends", "make_runner", "resolve_device", "resolve_precision", "runner_class"]
