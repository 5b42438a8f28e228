"""The PyTorch runner (CPU; CUDA with CUDA graphs). The network comes from the engine
file's own weights (:func:`ra_sdk.network.load_engine_network`): its ``model.safetensors``
member, or the initializers of its ``recon`` ONNX graph, which keeps every weight by name."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._arrays import is_cupy
from .._optional import require
from ..engine import Engine
from .base import Runner

log = logging.getLogger(__name__)


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, engine: Engine | None, *, network: str = "recon", device: str = "cpu", precision: str = "fp32", cuda_graphs: bool = True, net: Any = None):
        """``net``: an in-memory :class:`ra_sdk.network.RANet` to serve instead of the
        engine's weights (``engine`` may then be None)."""
        if precision == "int8":
            from ..errors import ConfigError

            raise ConfigError("the torch backend has no int8 path; run int8 networks with --backend onnxruntime (CPU) or a TensorRT plan built with --precision int8")
        torch = require("torch", "the torch backend")
        from ..engine import network_spec
        from ..network import load_engine_network, network_module

        if net is None:
            assert engine is not None
            super().__init__(engine, network=network, device=device, precision="fp32")  # the fp32 graph's I/O
            net = load_engine_network(engine)
        else:
            super().__init__(engine, network=network, device=device, spec=network_spec(net.cfg, network))
        self.precision = precision
        dev = torch.device("cuda" if device == "cuda" else "cpu")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = network_module(net, network).to(dev).eval().to(self.dtype)
        self.torch, self.dev = torch, dev
        self.outputs = list(self.spec.outputs)
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
        xt = torch.from_dlpack(x) if is_cupy(x) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
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
