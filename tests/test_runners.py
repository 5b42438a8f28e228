"""The runner boundary: inputs checked as Polygraphy's runners check them, backends by
name, a backend's own failure turned into one line."""

from __future__ import annotations

import numpy as np
import pytest

from ra_sdk.data import DEMO_ENGINE
from ra_sdk.engine import read_engine
from ra_sdk.errors import ConfigError, RunnerError
from ra_sdk.runners import list_backends, make_runner, runner_class


@pytest.fixture(scope="module")
def runner():
    with make_runner(read_engine(DEMO_ENGINE), backend="onnxruntime", device="cpu") as r:
        yield r


def test_inputs_are_checked_at_the_boundary(runner):
    out = runner.infer({"x": np.zeros((2, 1, 128, 128), np.float32)})
    assert out["x_ph"].shape == (2, 1, 128, 128) and {f"emb{i}" for i in range(5)} <= set(out)
    bad = {
        "expected inputs": {"y": np.zeros((1, 1, 128, 128), np.float32)},
        "4-D": {"x": np.zeros((1, 128, 128), np.float32)},
        "dimension 3": {"x": np.zeros((1, 1, 128, 64), np.float32)},
        "empty batch": {"x": np.zeros((0, 1, 128, 128), np.float32)},
        "real-valued": {"x": np.zeros((1, 1, 128, 128), np.complex64)},
    }
    for what, inputs in bad.items():
        with pytest.raises(ConfigError, match=what):
            runner.infer(inputs)


def test_max_batch_is_honoured_and_backend_failures_are_one_line(runner, monkeypatch):
    monkeypatch.setattr(type(runner), "max_batch", property(lambda self: 4))
    with pytest.raises(ConfigError, match=r"batch <= 4, got 5; split the batch or rebuild with --max-batch 5"):
        runner.infer({"x": np.zeros((5, 1, 128, 128), np.float32)})
    from ra_sdk.scorer import Scorer

    sc = Scorer.from_runners(read_engine(DEMO_ENGINE).meta.score, runner, make_runner(read_engine(DEMO_ENGINE), backend="onnxruntime", device="cpu", network="features"), batch_size=32)
    assert sc.batch_size == 4  # the scorer never asks for more than the runner takes
    monkeypatch.undo()

    def boom(inputs):
        raise RuntimeError("std::bad_alloc\nat some native frame")

    monkeypatch.setattr(runner, "_infer", boom)
    with pytest.raises(RunnerError, match=r"^onnxruntime recon: inference failed on a batch of 1 \(RuntimeError: std::bad_alloc at some native frame\)$"):
        runner.infer({"x": np.zeros((1, 1, 128, 128), np.float32)})


def test_backends_by_name():
    assert list_backends() == ["onnxruntime", "torch", "tensorrt"]
    with pytest.raises(ConfigError, match="valid: onnxruntime, torch, tensorrt"):
        runner_class("openvino")
