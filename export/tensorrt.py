"""TensorRT engines from the ONNX networks (build time; the runner that loads them is
``ra_sdk.runners.tensorrt``).

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

from ra_sdk.engine import EngineMeta, Network, read_engine, write_engine
from ra_sdk.errors import EngineError
from ra_sdk.runners.tensorrt import current_gpu, trt_version

log = logging.getLogger(__name__)


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
    int8_info = (src.meta.source or {}).get("int8") or {}
    for name in [n for n in src.meta.networks if "_" not in n]:
        key = f"{name}_fp16" if precision == "fp16" else name
        spec, blob = src.network(key)
        if precision == "int8" and name in int8_info.get("networks", ()):
            blob = symmetric_int8(src, name, blob, int8_info)
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


def symmetric_int8(src: Any, network: str, fp32_blob: bytes, int8_info: dict[str, Any]) -> bytes:
    """The QDQ graph TensorRT builds from: TensorRT takes only symmetric INT8 Q/DQ (zero
    point 0), while the bundle's int8 graph is ONNX Runtime's U8S8; so the fp32 graph is
    quantized again, with signed symmetric activations, on the same calibration images,
    method and float layers the bundle's int8 networks were made with (strongly typed: the
    precision lives in the graph)."""
    from .onnx_export import int8_calibration
    from .quantize import quantize

    calib, _ = int8_calibration(src.meta.preset, int8_info.get("calib_source", "auto"), (src.meta.source or {}).get("heldout"), int(int8_info.get("calib_n", 512)))
    float_layers = int8_info.get("float_layers") or {}
    if isinstance(float_layers, dict):  # per network (a list, in engines before per-network float layers, held all)
        float_layers = float_layers.get(network, [])
    return quantize(fp32_blob, calib, method=int8_info.get("method", "minmax"), float_layers=float_layers, symmetric=True)
