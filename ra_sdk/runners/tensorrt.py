"""The TensorRT runner: name-based I/O (``set_tensor_address``) and ``execute_async_v3`` on
a CuPy stream, CuPy arrays in and out; and the check that a plan was built for this GPU
and TensorRT version.

Written against the TensorRT 10/11 Python API and type-checked with mypy against
``tensorrt-stubs``. NOT VERIFIED ON HARDWARE: TensorRT is not installable on the machines
this project has used so far. Building plans is build-time work: ``ra_sdk.export.tensorrt``.
"""

from __future__ import annotations

from typing import Any

from .._optional import require
from ..engine import Engine
from ..errors import DeviceError, EngineError
from .base import Runner


def trt_version() -> tuple[int, int]:
    trt = require("tensorrt", "TensorRT engines")
    major, minor = (int(v) for v in trt.__version__.split(".")[:2])
    return major, minor


def current_gpu() -> dict[str, str]:
    cp = require("cupy", "TensorRT engines")
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"gpu": name, "compute_capability": f"{props['major']}.{props['minor']}"}


def check_compatible(engine: Engine) -> None:
    """Refuse a plan built for another GPU or TensorRT version, naming both."""
    trt = require("tensorrt", "TensorRT engines")

    b = engine.meta.build
    here = current_gpu()
    if b.get("version_compatible"):
        return
    if b.get("tensorrt") != trt.__version__ or b.get("compute_capability") != here["compute_capability"]:
        raise EngineError(
            f"{engine.path} was built for {b.get('gpu')} (compute {b.get('compute_capability')}) with TensorRT {b.get('tensorrt')}; "
            f"this is {here['gpu']} (compute {here['compute_capability']}) with TensorRT {trt.__version__}; rebuild it with ra-sdk build"
        )


class TensorRTRunner(Runner):
    """Name-based I/O (set_tensor_address) and execute_async_v3 on a CuPy stream; CuPy outputs."""

    name = "tensorrt"

    def __init__(self, engine: Engine, *, network: str = "recon", device: str = "cuda", precision: str = "fp32"):
        require("tensorrt", "the tensorrt backend")
        import tensorrt as trt

        if engine.meta.kind != "tensorrt":
            raise EngineError(f"{engine.path}: the tensorrt backend needs a .plan engine; build one with ra-sdk build")
        if device != "cuda":
            raise DeviceError("the tensorrt backend runs on a CUDA device only")
        super().__init__(engine, network=network, device=device, precision="fp32")
        check_compatible(engine)
        self.cp = require("cupy", "the tensorrt backend")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        trt_engine = self.runtime.deserialize_cuda_engine(self.blob)
        if trt_engine is None:
            raise EngineError(f"{engine.path}: TensorRT could not deserialize {self.spec.file}")
        self.trt_engine: trt.ICudaEngine | None = trt_engine
        self.context: trt.IExecutionContext | None = trt_engine.create_execution_context()
        self.stream = self.cp.cuda.Stream(non_blocking=True)
        self.outputs = list(self.spec.outputs)
        self._max_batch = int(engine.meta.build.get("max_batch", 1))

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        import tensorrt as trt

        cp = self.cp
        ctx = self.context
        if ctx is None:
            raise EngineError("this TensorRT runner is closed")
        x = cp.ascontiguousarray(cp.asarray(inputs["x"], dtype=cp.float32))  # batch checked in infer()
        ctx.set_input_shape("x", trt.Dims([int(s) for s in x.shape]))
        ctx.set_tensor_address("x", int(x.data.ptr))
        out = {}
        for name in self.outputs:
            dims = ctx.get_tensor_shape(name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            arr = cp.empty(shape, dtype=cp.float32)
            ctx.set_tensor_address(name, int(arr.data.ptr))
            out[name] = arr
        with self.stream:
            if not ctx.execute_async_v3(self.stream.ptr):
                raise EngineError("TensorRT execution failed")
        self.stream.synchronize()
        return out

    def close(self) -> None:
        self.context = None
        self.trt_engine = None
