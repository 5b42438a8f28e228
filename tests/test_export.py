"""Export, engine files, calibration and runners (ONNX Runtime and torch on CPU; TensorRT where present)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ra_sdk import metrics
from ra_sdk.cli import main
from ra_sdk.data import DEMO_ENGINE
from ra_sdk.engine import EngineError, read_engine, write_engine
from ra_sdk.scorer import Scorer
from ra_sdk.scoring import ScoreConfig

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "ra_sdk" / "data" / "ra_brain_demo.onnx-bundle"  # the bundled engine keeps its weights
torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from ra_sdk.export.onnx_export import export_checkpoint

    from ra_sdk.calibration import calibrate

    out = tmp_path_factory.mktemp("bundle") / "m.onnx-bundle"
    export_checkpoint(CKPT, out, score=ScoreConfig(perceptual="features", aggregation="topk"), fp16=True, include_weights=True)
    calibrate(out, "embedded", n=64, backend="onnxruntime", device="cpu")
    return out


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from ra_sdk.evaluation import synthetic_suite

    s = synthetic_suite(24, 3)
    return np.concatenate([s.normals, *[imgs for imgs, _ in s.sets.values()]])


@pytest.mark.slow
def test_onnx_matches_pytorch_per_output(bundle):
    import onnxruntime as ort
    from ra_sdk.train import load_model

    from ra_sdk.network import ReconNet

    eng = read_engine(bundle)
    net, _ = load_model(CKPT)
    x = np.random.default_rng(0).random((6, 1, 128, 128), dtype=np.float32)
    sess = ort.InferenceSession(eng.network("recon")[1], providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})
    with torch.no_grad():
        ref = ReconNet(net)(torch.from_numpy(x))
    names = [o.name for o in sess.get_outputs()]
    assert names == ["x_ph", "emb0", "emb1", "emb2", "emb3", "emb4"]
    for n, g, r in zip(names, got, ref):
        assert np.abs(g - r.numpy()).max() <= 1e-4, n
    import onnx

    m = onnx.load_from_string(eng.network("recon")[1])
    assert m.opset_import[0].version >= 17
    # the last convolution (16 -> 1) runs as depthwise + 1x1 channel sum (ONNX Runtime's NCHWc
    # padded its one output channel to 16), its weight kept by name and shape
    head = [n for n in m.graph.node if n.name.endswith("/channel_sum")]
    assert len(head) == 1 and any(i.name == "net.decoder.body.11.weight" and list(i.dims)[:2] == [1, 16] for i in m.graph.initializer)
    assert {p.key for p in m.metadata_props} >= {"ra_sdk.version", "ra_sdk.network", "ra_sdk.model"}
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.slow
def test_onnxruntime_pipeline_matches_torch_pipeline(bundle, images):
    eng = read_engine(bundle)
    cal = eng.meta.calibration
    assert cal is not None
    with Scorer(eng, backend="onnxruntime", device="cpu") as s_ort, Scorer(eng, backend="torch", device="cpu") as s_pt:
        _, sc_ort, _ = s_ort.score(images)
        _, sc_pt, _ = s_pt.score(images)
    assert metrics.spearman(sc_ort, sc_pt) >= 0.9999
    assert np.array_equal(sc_ort > cal.threshold, sc_pt > cal.threshold)
    np.testing.assert_allclose(sc_ort, sc_pt, rtol=1e-3)


@pytest.mark.slow
def test_fp16_bundle_runs_with_float32_io(bundle, images):
    eng = read_engine(bundle)
    with Scorer(eng, backend="onnxruntime", device="cpu", precision="fp16") as s16, Scorer(eng, backend="onnxruntime", device="cpu") as s32:
        _, a, r16 = s16.score(images[:16])
        _, b, r32 = s32.score(images[:16])
    assert r16.dtype == np.float32 and np.abs(r16 - r32).max() < 0.05
    assert metrics.spearman(a, b) > 0.9


@pytest.mark.slow
def test_calibration_and_inspect(bundle):
    eng = read_engine(bundle)
    cal = eng.meta.calibration
    assert cal is not None and len(cal.normal_scores) == 64
    assert cal.threshold == pytest.approx(np.percentile(cal.normal_scores, 95))
    assert 0 <= cal.percentile_of(cal.threshold) <= 100 and cal.percentile_of(1e9) == 100.0
    r = CliRunner().invoke(main, ["inspect", str(bundle)])
    assert r.exit_code == 0 and "calib    64 normals" in r.output and "preset   brain-mri-t1" in r.output
    d = json.loads(CliRunner().invoke(main, ["inspect", str(bundle), "--json"]).output)
    assert d["calibration"]["percentile"] == 95.0 and "normal_scores" not in d["calibration"]


def test_bundled_demo_engine_is_calibrated_and_small():
    eng = read_engine(DEMO_ENGINE)
    assert eng.meta.calibration is not None and eng.meta.kind == "onnx"
    assert DEMO_ENGINE.stat().st_size < 20e6
    r = CliRunner().invoke(main, ["inspect", str(DEMO_ENGINE)])
    assert r.exit_code == 0 and "calib" in r.output and "preset" in r.output


@pytest.mark.slow
def test_truncated_and_tampered_engine_files_fail_with_one_line(bundle, tmp_path):
    data = bundle.read_bytes()
    trunc = tmp_path / "trunc.onnx-bundle"
    trunc.write_bytes(data[: len(data) // 3])
    with pytest.raises(EngineError, match="truncated"):
        read_engine(trunc)
    eng = read_engine(bundle)
    members = dict(eng.members)
    tampered = tmp_path / "tampered.onnx-bundle"
    with zipfile.ZipFile(tampered, "w") as zf:  # same meta.json, one member changed
        zf.writestr("meta.json", json.dumps(eng.meta.to_dict()))
        for name, blob in members.items():
            zf.writestr(name, blob if name != "recon.onnx" else blob[:-10] + b"0123456789")
    with pytest.raises(EngineError, match=r"checksum of recon\.onnx does not match"):
        read_engine(tampered)
    for bad in (trunc, tampered, tmp_path / "missing.plan"):
        r = CliRunner().invoke(main, ["inspect", str(bad)])
        assert r.exit_code != 0
        assert "Traceback" not in r.output and r.output.count("\n") <= 2


@pytest.mark.slow
def test_write_engine_is_atomic(bundle, tmp_path, monkeypatch):
    """A write that fails half-way (a full disk at fsync) leaves the old engine whole and
    no temporary file: a writer that opened the target itself would have truncated it."""
    import errno
    import os

    eng = read_engine(bundle)
    out = write_engine(tmp_path / "copy.onnx-bundle", eng.meta, eng.members)
    before = out.read_bytes()
    assert read_engine(out).meta.checksums == eng.meta.checksums

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    eng.meta.source = {**eng.meta.source, "changed": True}
    with pytest.raises(OSError, match="No space"):
        write_engine(out, eng.meta, eng.members)
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.onnx-bundle"]


@pytest.mark.slow
def test_runner_selection_errors(bundle):
    from ra_sdk.errors import ConfigError
    from ra_sdk.runners import list_backends, make_runner

    eng = read_engine(bundle)
    assert list_backends() == ["onnxruntime", "torch", "tensorrt"]
    with pytest.raises(ConfigError, match="valid: onnxruntime, torch, tensorrt"):
        make_runner(eng, backend="openvino", device="cpu")
    r = make_runner(eng, backend="auto", device="cpu")
    assert r.name == "onnxruntime"
    with r:
        out = r.infer({"x": np.zeros((2, 1, 128, 128), np.float32) + 0.5})
    assert out["x_ph"].shape == (2, 1, 128, 128)


@pytest.mark.needs_cuda
def test_torch_cuda_runner_with_kernels_matches_cpu(bundle, images):
    eng = read_engine(bundle)
    with Scorer(eng, backend="torch", device="cuda") as sg, Scorer(eng, backend="onnxruntime", device="cpu") as sc:
        _, a, _ = sg.score(images)
        _, b, _ = sc.score(images)
    assert metrics.spearman(a, b) >= 0.9999
    assert np.array_equal(a > eng.meta.calibration.threshold, b > eng.meta.calibration.threshold)


@pytest.mark.needs_trt
def test_tensorrt_engine_matches_onnxruntime(bundle, images, tmp_path):
    from ra_sdk.export.tensorrt import build_engine_file

    plan = build_engine_file(bundle, tmp_path / "m.plan", max_batch=32)
    eng = read_engine(plan)
    assert eng.meta.kind == "tensorrt" and eng.meta.build["tensorrt"]
    with Scorer(eng, backend="tensorrt", device="cuda") as st, Scorer(read_engine(bundle), backend="onnxruntime", device="cpu") as so:
        _, a, _ = st.score(images)
        _, b, _ = so.score(images)
    assert metrics.spearman(a, b) >= 0.9999


@pytest.mark.slow
def test_calibrate_from_a_folder_of_normal_studies(bundle, tmp_path):
    import shutil

    from ra_sdk.calibration import calibrate
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.io.write import write_png

    for i, img in enumerate(normal_batch("val", 12, start=300)):
        write_png(tmp_path / "normals" / f"n{i}.png", (img * 255).astype(np.uint8))
    (tmp_path / "normals" / "broken.png").write_bytes(b"")  # skipped with a warning, not fatal
    copy = tmp_path / "c.onnx-bundle"
    shutil.copy(bundle, copy)
    eng = calibrate(copy, tmp_path / "normals", backend="onnxruntime", device="cpu")
    assert len(eng.meta.calibration.normal_scores) == 12 and "normals: 12 images" in eng.meta.calibration.source


@pytest.mark.slow
def test_an_engine_is_a_checkpoint_bit_for_bit_and_reexports_identically(tmp_path):
    """The recon network keeps every weight by name: the state dict comes back exactly
    (BN step counters excepted), and re-exporting the engine gives the same bytes."""
    from ra_sdk.export.onnx_export import export_checkpoint
    from ra_sdk.train import checkpoint as ckpt
    from ra_sdk.train import load_model

    from ra_sdk.configs import get_model_config
    from ra_sdk.network import build
    from ra_sdk.preprocess import get_preset

    torch.manual_seed(3)
    cfg = get_model_config("ra-tiny")
    net = build(cfg)
    for m in net.modules():  # non-trivial BN statistics, so that a fold would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt.save(tmp_path / "ck", net, model_config=cfg, preset=get_preset("brain-mri-t1").to_dict(), train_config={"objective": "ra"}, progress={"step": 7})
    a = export_checkpoint(tmp_path / "ck", tmp_path / "a.onnx-bundle")
    b = export_checkpoint(a, tmp_path / "b.onnx-bundle")
    assert a.read_bytes() == b.read_bytes()
    weights, config = ckpt.load_weights(a)
    original = net.state_dict()
    assert set(weights) == set(original)
    for k, v in original.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(weights[k], v), k
    assert config["progress"] == {"step": 7} and config["model"] == cfg.to_dict()
    rebuilt, _ = load_model(a)
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.equal(rebuilt.reconstruct(x)[0], net.eval().reconstruct(x)[0])


def test_an_engine_with_folded_weights_is_a_clear_error(tmp_path):
    import io

    from ra_sdk.train import checkpoint as ckpt

    from ra_sdk.network import network_module

    eng = read_engine(CKPT)
    net, _ = ckpt.load_model(CKPT)
    buf = io.BytesIO()  # the exporter's default: BatchNorm folded into the convolutions
    torch.onnx.export(network_module(net, "recon"), (torch.rand(1, 1, 128, 128),), buf, input_names=["x"], opset_version=17, dynamo=False)
    members = dict(eng.members)
    members[eng.meta.networks["recon"].file] = buf.getvalue()
    write_engine(tmp_path / "old.onnx-bundle", eng.meta, members)
    with pytest.raises(ckpt.CheckpointError, match="does not keep the weight"):
        ckpt.load_weights(tmp_path / "old.onnx-bundle")


def test_one_output_channel_convs_become_the_same_sums():
    """C -> 1 Conv rewritten as depthwise Conv + 1x1 Conv of ones with the bias: equal in float (the
    reference is the plain Conv, atol 1e-6), strides, pads and dilations kept; other
    convolutions untouched."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from ra_sdk.export.onnx_export import one_channel_convs_as_depthwise

    rng = np.random.default_rng(1)
    x = rng.random((3, 8, 20, 20), dtype=np.float32)
    for bias, attrs in ((True, {"pads": [1, 1, 1, 1]}), (False, {"strides": [2, 2], "dilations": [2, 2], "pads": [2, 1, 2, 1]})):
        inits = [numpy_helper.from_array(rng.normal(size=(1, 8, 3, 3)).astype(np.float32), "w"), numpy_helper.from_array(rng.normal(size=(4, 8, 1, 1)).astype(np.float32), "w4")]
        inputs = ["x", "w"]
        if bias:
            inits.append(numpy_helper.from_array(np.array([0.7], np.float32), "b"))
            inputs.append("b")
        nodes = [helper.make_node("Conv", inputs, ["y"], name="head", **attrs), helper.make_node("Conv", ["x", "w4"], ["z"], name="other")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 20, 20])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "H", "W"]), helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4, 20, 20])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        assert one_channel_convs_as_depthwise(model) == 1
        onnx.checker.check_model(model)
        assert [n.op_type for n in model.graph.node].count("Conv") == 3 and any(n.name == "head/channel_sum" for n in model.graph.node)
        got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        for a, b in zip(ref, got):
            assert a.shape == b.shape
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
