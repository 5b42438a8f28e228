"""The runner interface: a context manager with ``infer(named inputs) -> named outputs``.

Inputs are checked at this boundary, as Polygraphy's runners do: the names the network
takes, 4-D (B, C, H, W) with C, H, W as the engine file declares, a batch of at least one
and at most ``max_batch``. A subclass sets ``name`` and implements ``_infer``.
"""

from __future__ import annotations

import threading
from typing import Any

from ..engine import Engine, Network
from ..errors import ConfigError, EngineError, RaSdkError, RunnerError

#: the batch limit of a runner whose backend has none (ONNX Runtime, torch)
UNLIMITED = 1 << 30


class Runner:
    """Base: one network of one engine on one device. Thread-safe ``infer`` (one call at a
    time per runner)."""

    name = ""

    def __init__(self, engine: Engine | None, *, network: str = "recon", device: str = "cpu", precision: str = "fp32", spec: Network | None = None):
        self.engine = engine
        self.network_name = network
        self.device = device
        self.precision = precision
        if spec is not None:  # a network held in memory (a checkpoint being evaluated)
            self.spec, self.blob = spec, b""
        else:
            assert engine is not None
            self.spec, self.blob = engine.network(self._network_key(engine, network, precision))
        self._lock = threading.Lock()

    @staticmethod
    def _network_key(engine: Engine, network: str, precision: str) -> str:
        key = network if precision == "fp32" else f"{network}_{precision}"
        if precision == "int8" and key not in engine.meta.networks and network in engine.meta.networks:
            return network  # int8 where it passed the fidelity bar at export, fp32 elsewhere
        if key not in engine.meta.networks:
            have = ", ".join(engine.meta.networks)
            raise EngineError(f"{engine.path}: no {precision} {network} network (has {have}); re-export with --{precision}")
        return key

    @property
    def max_batch(self) -> int:
        """The largest batch one ``infer`` call takes."""
        return UNLIMITED

    def check_inputs(self, inputs: dict[str, Any]) -> None:
        """Refuse inputs the network cannot take, saying what was expected and what came."""
        check_inputs(self.spec, inputs, max_batch=self.max_batch, where=f"{self.name} {self.network_name}")

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Named (B, C, H, W) float32 arrays in (numpy, or CuPy on a GPU runner); named
        outputs back (numpy on the CPU, CuPy on a GPU)."""
        self.check_inputs(inputs)
        with self._lock:
            try:
                return self._infer(inputs)
            except RaSdkError:
                raise
            except Exception as err:  # the backend's own exception types (ORT, CUDA, TensorRT)
                b = getattr(next(iter(inputs.values())), "shape", ("?",))[0]
                reason = " ".join(str(err).split())[:300] or type(err).__name__
                raise RunnerError(f"{self.name} {self.network_name}: inference failed on a batch of {b} ({type(err).__name__}: {reason})") from err

    def _infer(self, inputs: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release sessions and device memory."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_inputs(spec: Network, inputs: dict[str, Any], *, max_batch: int = UNLIMITED, where: str = "runner") -> None:
    """The input check of :meth:`Runner.check_inputs` for a network spec."""
    want, got = set(spec.inputs), set(inputs)
    if want != got:
        raise ConfigError(f"{where}: expected inputs {sorted(want)}, got {sorted(got)}")
    for name, shape in spec.inputs.items():
        a = inputs[name]
        s = tuple(int(v) for v in getattr(a, "shape", ()))
        if len(s) != len(shape):
            raise ConfigError(f"{where}: input {name!r} must be {len(shape)}-D {_fmt(shape)}, got shape {s}")
        for i, (dim, exp) in enumerate(zip(s, shape)):
            if exp >= 0 and dim != exp:
                raise ConfigError(f"{where}: input {name!r} must have shape {_fmt(shape)}, got {s} (dimension {i})")
        if s[0] < 1:
            raise ConfigError(f"{where}: input {name!r} holds an empty batch")
        if s[0] > max_batch:
            raise ConfigError(f"{where}: engine built for batch <= {max_batch}, got {s[0]}; split the batch or rebuild with --max-batch {s[0]}")
        kind = getattr(getattr(a, "dtype", None), "kind", None)
        if kind not in ("f", "u", "i"):
            raise ConfigError(f"{where}: input {name!r} must be a real-valued array, got dtype {getattr(a, 'dtype', type(a).__name__)}")


def _fmt(shape: list[int]) -> str:
    return "(" + ", ".join("B" if i == 0 and v < 0 else "?" if v < 0 else str(v) for i, v in enumerate(shape)) + ")"
