"""The ONNX Runtime runner: the portable backend of the core install (CPU; CUDA and
TensorRT execution providers with onnxruntime-gpu)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._optional import import_onnxruntime
from ..engine import Engine
from ..errors import DeviceError, EngineError
from .base import Runner


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, engine: Engine, *, network: str = "recon", device: str = "cpu", precision: str = "fp32", threads: int = 0):
        super().__init__(engine, network=network, device=device, precision=precision)
        if engine.meta.kind != "onnx":
            raise EngineError(f"{engine.path}: the onnxruntime backend needs an ONNX bundle, this is a {engine.meta.kind} engine")
        ort = import_onnxruntime()
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
        opts.log_severity_level = 4  # errors come back as one RunnerError line, not as ORT log spew
        try:
            self.session = ort.InferenceSession(self.blob, sess_options=opts, providers=providers)
        except Exception as err:  # ORT's own exception types (InvalidProtobuf, Fail, ...): untrusted bytes
            reason = " ".join(str(err).split())[:300]
            raise EngineError(f"{engine.path}: ONNX Runtime cannot load its {self.spec.file} ({type(err).__name__}: {reason})") from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        missing = set(self.spec.outputs) - set(self.outputs)
        if missing:
            raise EngineError(f"{engine.path}: {self.spec.file} lacks the outputs {sorted(missing)} that meta.json lists")

    def _infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return dict(zip(self.outputs, self.session.run(self.outputs, feed)))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
