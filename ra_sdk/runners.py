"""Runtime backends behind one interface: a context manager with
``infer(named inputs) -> named outputs``.

| backend       | needs                           | devices                         |
| onnxruntime   | core install                    | CPU; CUDA / TensorRT EPs with onnxruntime-gpu |
| torch         | the ``train`` extra, weights in the engine file | CPU; CUDA (with CUDA graphs) |
| tensorrt      | the ``trt`` and ``gpu`` extras, a .plan built for this GPU | CUDA |

On CPU, outputs are numpy arrays. On a GPU the torch and tensorrt runners return CuPy
arrays that stay on the device (DLPack, no host copy), ready for the CUDA scoring kernels.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ._optional import is_installed, require
from .engine import Engine, EngineError
from .errors import ConfigError, DeviceError
from .info import cuda_driver

log = logging.getLogger(__name__)


class Runner:
    """Base: subclasses set ``name`` and implement ``_infer``. Thread-safe ``infer``."""

    name = ""

    def __init__(self, engine: Engine, *, network: str = "recon", device: str = "cpu", precision: str = "fp32"):
        self.engine = engine
        self.network_name = network
        self.device = device
        self.precision = precision
        self.spec, self.blob = engine.network(self._network_key(network, precision))
        self._lock = threading.Lock()

    def _network_key(self, network: str, precision: str) -> str:
        key = network if precision == "fp32" else f"{network}_{precision}"
        if key not in self.engine.meta.networks:
            have = ", ".join(self.engine.meta.networks)
            raise EngineError(f"{self.engine.path}: no {precision} {network} network (has {have}); re-export with --fp16")
        return key

    @property
    def max_batch(self) -> int:
        return 1 << 30

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._infer(inputs)

    def _infer(self, inputs: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release sessions and device memory."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, engine: Engine, *, network: str = "recon", device: str = "cpu", precision: str = "fp32", threads: int = 0):
        super().__init__(engine, network=network, device=device, precision=precision)
        if engine.meta.kind != "onnx":
            raise EngineError(f"{engine.path}: the onnxruntime backend needs an ONNX bundle, this is a {engine.meta.kind} engine")
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise DeviceError("onnxruntime has no CUDAExecutionProvider here; install onnxruntime-gpu (pip install 'ra-sdk[gpu]')")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "tensorrt":
            if "TensorrtExecutionProvider" not in available:
                raise DeviceError("onnxruntime has no TensorrtExecutionProvider here; install onnxruntime-gpu with TensorRT")
            providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # Screening decodes studies in other threads on the same cores: idle ORT workers
        # that spin-wait take their CPU (measured: ~12% more end-to-end images/s without).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(self.blob, sess_options=opts, providers=providers)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return dict(zip(self.outputs, self.session.run(self.outputs, feed)))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


class TorchRunner(Runner):
    """Runs the PyTorch network from the weights stored in the engine file
    (``model.safetensors``, written by ``ra-sdk export --include-weights``)."""

    name = "torch"

    def __init__(self, engine: Engine, *, network: str = "recon", device: str = "cpu", precision: str = "fp32", cuda_graphs: bool = True):
        self.engine = engine
        self.network_name = network
        self.device = device
        self.precision = precision
        self._lock = threading.Lock()
        if "model.safetensors" not in engine.members:
            raise EngineError(f"{engine.path}: the torch backend needs the PyTorch weights; export with --include-weights")
        torch = require("torch", "the torch backend")
        from safetensors.torch import load as load_st

        from .train.model import build, network_module

        net = build(engine.meta.model)
        net.load_state_dict(load_st(engine.members["model.safetensors"]))
        module: Any = network_module(net, network)
        dev = torch.device("cuda" if device == "cuda" else "cpu")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.to(dev).eval().to(self.dtype)
        self.torch, self.dev = torch, dev
        self.outputs = ["x_ph"] + [f"emb{i}" for i in range(len(engine.meta.model.channels))] if network == "recon" else [f"emb{i}" for i in range(len(engine.meta.model.channels))]
        self.cuda_graphs = cuda_graphs and dev.type == "cuda"
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}

    def _run(self, x: Any) -> Any:
        torch = self.torch
        if not self.cuda_graphs:
            return self.module(x)
        b = x.shape[0]
        if b not in self._graphs:
            try:
                static_in = x.clone()
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(2):
                        self.module(static_in)
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    static_out = self.module(static_in)
                self._graphs[b] = (g, static_in, static_out)
            except RuntimeError as err:  # capture can fail on some setups: run eagerly
                log.warning("CUDA graph capture failed (%s); running eagerly", str(err).splitlines()[0])
                self.cuda_graphs = False
                return self.module(x)
        g, static_in, static_out = self._graphs[b]
        static_in.copy_(x)
        g.replay()
        return tuple(t.clone() for t in static_out)

    def _infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        x = inputs["x"]
        on_gpu = type(x).__module__.split(".")[0] == "cupy"
        xt = torch.from_dlpack(x) if on_gpu else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        xt = xt.to(self.dev, self.dtype)
        # fp32 means fp32: cuDNN's TF32 convolutions (PyTorch's default on Ampere and newer)
        # move x_ph by ~1e-3, enough to flip CLAHE bins and image flags.
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=self.precision != "fp32"):
            out = self._run(xt)
        out = out if isinstance(out, tuple) else (out,)
        if self.dev.type == "cuda":
            cp = require("cupy", "GPU outputs")
            return {n: cp.from_dlpack(t.float().contiguous()) for n, t in zip(self.outputs, out)}
        return {n: t.float().numpy() for n, t in zip(self.outputs, out)}

    def close(self) -> None:
        self._graphs.clear()


def tensorrt_runner(engine: Engine, **kw: Any) -> Runner:
    from .export.tensorrt import TensorRTRunner  # needs the trt extra; unverified without a GPU

    return TensorRTRunner(engine, **kw)


BACKENDS = {"onnxruntime": OnnxRuntimeRunner, "torch": TorchRunner, "tensorrt": tensorrt_runner}


def list_backends() -> list[str]:
    return list(BACKENDS)


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda", "tensorrt"):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    if device == "auto":
        return "cuda" if cuda_driver()[0] and (is_installed("torch") or is_installed("cupy")) else "cpu"
    if device in ("cuda", "tensorrt") and not cuda_driver()[0]:
        raise DeviceError(f"device {device!r} requested but {cuda_driver()[1]}")
    return device


def make_runner(engine: Engine, *, backend: str = "auto", device: str = "auto", network: str = "recon", precision: str = "fp32") -> Runner:
    """The runner for ``engine``; "auto" picks tensorrt for .plan files, else torch on a GPU
    when the weights are there, else onnxruntime."""
    dev = resolve_device(device)
    if backend == "auto":
        if engine.meta.kind == "tensorrt":
            backend = "tensorrt"
        elif dev == "cuda" and "model.safetensors" in engine.members and is_installed("torch"):
            backend = "torch"
        else:
            backend = "onnxruntime"
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; valid: {', '.join(list_backends())}")
    log.info("backend %s on %s for %s (%s)", backend, dev, network, precision)
    return BACKENDS[backend](engine, network=network, device=dev, precision=precision)  # type: ignore[operator]
