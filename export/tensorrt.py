"""TensorRT engines from the ONNX networks, and the TensorRT runner.

Written against the TensorRT 10/11 Python API (name-based I/O, ``execute_async_v3``) and
type-checked with mypy against ``tensorrt-stubs``. NOT VERIFIED ON HARDWARE: TensorRT is
not installable on the machines this project has used so far.

TensorRT 11 builds strongly typed networks only: precision comes from the ONNX graph
(``recon_fp16.onnx`` for FP16), never from builder flags. On TensorRT 10 the same strongly
typed path is used by default; ``use_builder_flags=True`` takes the FP16 builder flag
on the FP32 graph instead.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

from ra_sdk._optional import require
from ra_sdk.engine import Engine, EngineError, EngineMeta, Network, read_engine, write_engine
from ra_sdk.errors import DeviceError
from ra_sdk.runners import Runner

log = logging.getLogger(__name__)


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


def build_plan(
    onnx_bytes: bytes,
    *,
    input_shape: tuple[int, int, int],
    min_batch: int = 1,
    opt_batch: int = 16,
    max_batch: int = 64,
    precision: str = "fp32",
    use_builder_flags: bool = False,
    timing_cache: Path | None = None,
    optimization_level: int = 3,
    version_compatible: bool = False,
    workspace_bytes: int = 4 << 30,
) -> bytes:
    """Serialize a TensorRT engine for ``onnx_bytes`` with one optimisation profile."""
    import tensorrt as trt

    major, _ = trt_version()
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise EngineError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    if use_builder_flags and major >= 11:
        raise EngineError("TensorRT 11 is strongly typed only: build FP16 from the FP16 ONNX graph, not with builder flags")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if use_builder_flags else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.builder_optimization_level = optimization_level
    if use_builder_flags and precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    profile = builder.create_optimization_profile()
    c, h, w = input_shape
    profile.set_shape("x", trt.Dims([min_batch, c, h, w]), trt.Dims([opt_batch, c, h, w]), trt.Dims([max_batch, c, h, w]))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError("TensorRT failed to build the engine (see the TensorRT log above)")
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(plan))


def build_engine_file(
    bundle: str | Path,
    out: str | Path,
    *,
    precision: str = "fp32",
    min_batch: int = 1,
    opt_batch: int = 16,
    max_batch: int = 64,
    timing_cache: Path | None = None,
    optimization_level: int = 3,
    version_compatible: bool = False,
) -> Path:
    """ONNX bundle -> ``.plan`` engine file for this GPU and TensorRT version."""
    import tensorrt as trt

    src = read_engine(bundle)
    members: dict[str, bytes] = {}
    nets: dict[str, Network] = {}
    m = src.meta.model
    for name in [n for n in src.meta.networks if not n.endswith("_fp16")]:
        key = f"{name}_fp16" if precision == "fp16" else name
        spec, blob = src.network(key)
        plan = build_plan(
            blob, input_shape=(m.in_channels, m.image_size, m.image_size), min_batch=min_batch, opt_batch=opt_batch,
            max_batch=max_batch, precision=precision, timing_cache=timing_cache, optimization_level=optimization_level,
            version_compatible=version_compatible,
        )
        members[f"{name}.plan"] = plan
        nets[name] = Network(f"{name}.plan", {"x": [-1, m.in_channels, m.image_size, m.image_size]}, spec.outputs, precision)
    meta = EngineMeta(
        kind="tensorrt", model=m, preset=src.meta.preset, score=src.meta.score, networks=nets,
        calibration=src.meta.calibration,
        build={**current_gpu(), "tensorrt": trt.__version__, "min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch,
               "version_compatible": version_compatible, "host": platform.node()},
        versions=src.meta.versions, source={**src.meta.source, "bundle": Path(bundle).name},
    )
    return write_engine(out, meta, members)


def check_compatible(engine: Engine) -> None:
    """Refuse a plan built for another GPU or TensorRT version, naming both."""
    import tensorrt as trt

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
        x = cp.ascontiguousarray(cp.asarray(inputs["x"], dtype=cp.float32))
        b = int(x.shape[0])
        if b > self._max_batch:
            raise EngineError(f"engine built for batch <= {self._max_batch}, got {b}; rebuild with --max-batch {b}")
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
