"""INT8 engines: QDQ networks kept only where they pass the fidelity bar against the fp32
reference (Spearman >= 0.995, flags identical >= 99%, |AUROC change| <= 0.01 on validation
images), recorded in the engine, picked by precision "auto" on VNNI CPUs."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from ra_sdk.cli import main
from ra_sdk.data import DEMO_ENGINE
from ra_sdk.engine import read_engine

pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "m.onnx-bundle"
    r = CliRunner().invoke(main, ["export", str(DEMO_ENGINE), "--out", str(out), "--perceptual", "features", "--aggregation", "topk", "--topk", "0.05", "--foreground", "0.05", "--int8", "--calib-images", "128"])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.slow
def test_int8_networks_pass_their_bar_and_are_recorded(int8_bundle):
    eng = read_engine(int8_bundle)
    q = eng.meta.source["int8"]
    assert q["passed"] and q["networks"] and all(f"{n}_int8" in eng.meta.networks for n in q["networks"])
    f = q["fidelity"]
    assert f["spearman"] >= 0.995 and f["flags_identical"] >= 0.99 and abs(f["auroc_change"]) <= 0.01
    assert q["activations"].startswith("uint8") and q["weights"].startswith("int8") and "validation" in q["calibration"]
    # what failed on the way is recorded too (full int8 is tried first)
    from ra_sdk.export.onnx_export import INT8_CANDIDATES, candidate_name

    assert next(iter(q["attempts"])) == candidate_name(*INT8_CANDIDATES[0]) == "recon+features [float stem to the first pool: recon+features]"
    assert q["candidate"] in q["attempts"] and q["attempts"][q["candidate"]]["passed"]
    import onnx

    for net, names in q["float_layers"].items():  # what it says stays float is in the graph, unquantized
        graph = onnx.load_from_string(eng.members[f"{net}_int8.onnx"]).graph
        producer = {o: n.op_type for n in graph.node for o in n.output}
        convs = {n.name: n for n in graph.node if n.op_type in ("Conv", "Gemm")}
        assert all(name in {n.name for n in graph.node} for name in names)
        assert all(producer.get(convs[name].input[1]) != "DequantizeLinear" for name in names if name in convs)
    assert int8_bundle.stat().st_size < 16 * 2**20
    out = CliRunner().invoke(main, ["inspect", str(int8_bundle)]).output
    assert "int8     networks" in out and "passed" in out


@pytest.mark.slow
def test_int8_runs_and_auto_picks_it_on_vnni(int8_bundle):
    from ra_sdk import load
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.info import cpu_int8_dot

    x = list(normal_batch("test", 6, start=1200))
    with load(int8_bundle, backend="onnxruntime", device="cpu", precision="int8") as s8, load(int8_bundle, backend="onnxruntime", device="cpu", precision="fp32") as s32:
        a = np.array([r.score for r in s8.screen(x)])
        b = np.array([r.score for r in s32.screen(x)])
        assert s8.scorer.recon.precision == "int8"
    assert np.all(np.isfinite(a)) and np.argsort(a).tolist() == np.argsort(b).tolist()
    with load(int8_bundle, backend="onnxruntime", device="cpu") as auto:
        assert auto.scorer.recon.precision == ("int8" if cpu_int8_dot() else "fp32")
    from ra_sdk.export.quantize import without_int8

    eng = without_int8(read_engine(int8_bundle))  # the same engine without its int8 networks: auto is fp32
    assert not any("int8" in k for k in [*eng.meta.networks, *eng.members, *eng.meta.source])
    with load(eng, backend="onnxruntime", device="cpu") as plain:
        assert plain.scorer.recon.precision == "fp32"


@pytest.mark.slow
def test_an_int8_network_that_fails_the_bar_is_refused(tmp_path, monkeypatch):
    import ra_sdk.export.quantize as q

    real = q.fidelity

    def strict(*a, **k):
        f = real(*a, **k)
        return {**f, "spearman": 0.9, "passed": False}

    monkeypatch.setattr(q, "fidelity", strict)
    r = CliRunner().invoke(main, ["export", str(DEMO_ENGINE), "--out", str(tmp_path / "x.onnx-bundle"), "--perceptual", "features", "--int8", "--calib-images", "32"])
    assert r.exit_code == 1 and "no int8 network passes the fidelity bar" in r.output and "Spearman 0.9000" in r.output
    assert not (tmp_path / "x.onnx-bundle").exists()


def test_calibrating_int8_of_a_radiograph_engine_needs_its_own_normals():
    from ra_sdk.export.onnx_export import int8_calibration

    from ra_sdk.calibration import normal_images
    from ra_sdk.errors import ConfigError
    from ra_sdk.preprocess import get_preset

    for calib in ("auto", "embedded"):
        with pytest.raises(ConfigError, match="chest-xray engine needs its own normals: --calib DIR"):
            int8_calibration(get_preset("chest-xray"), calib, None, 16)
    with pytest.raises(ConfigError, match="needs its own normals: --normals DIR"):  # ra-sdk calibrate names its own option
        normal_images("auto", get_preset("chest-xray"))
    imgs, desc = int8_calibration(get_preset("brain-mri-t1"), "auto", None, 16)
    assert imgs.shape == (16, 1, 128, 128) and desc == "embedded validation split (16 images from index 1000)"


def test_the_int8_pool_rewrite_is_the_same_sums_and_only_for_onnx_runtime(tmp_path):
    """AveragePool 2x2/2 -> depthwise Conv (weights 1/4): equal outputs in float (the
    reference), and the int8 graph then has no average pool left for ONNX Runtime's slow
    QLinearAveragePool; TensorRT's symmetric variant keeps its pools."""
    import onnx
    import onnxruntime as ort
    from ra_sdk.export.quantize import _prepared, pools_as_depthwise, quantize

    from ra_sdk.data.augment import normal_batch

    blob = read_engine(DEMO_ENGINE).network("features")[1]
    model = onnx.load(str(_prepared(blob, tmp_path)))
    pools = sum(n.op_type == "AveragePool" for n in model.graph.node)
    assert pools_as_depthwise(model) == pools == 5  # after the stem and after each of the 4 stages
    assert not any(n.op_type == "AveragePool" for n in model.graph.node)
    x = normal_batch("test", 4, start=1300)[:, None]
    ref = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    new = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b in zip(ref, new):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)  # same sums, other order: float rounding only

    calib = normal_batch("val", 16, start=1000)[:, None]
    ops = {n.op_type for n in onnx.load_from_string(quantize(blob, calib)).graph.node}
    assert "AveragePool" not in ops and "QuantizeLinear" in ops
    ops_trt = {n.op_type for n in onnx.load_from_string(quantize(blob, calib, symmetric=True)).graph.node}
    assert "AveragePool" in ops_trt


def test_the_int8_upsampling_rewrite_gives_the_same_outputs_bit_for_bit():
    """resizes_as_expand: the reconstruction's five 2x nearest upsamplings, between Q/DQ
    pairs of one scale, become uint8 Expands; ONNX Runtime then gives exactly the outputs of
    the graph as quantize_static wrote it (nearest neighbour copies, no arithmetic). The
    TensorRT variant (symmetric) keeps its Resize."""
    import onnx
    import onnxruntime as ort
    from ra_sdk.export.quantize import float_edges, quantize, resizes_as_expand

    from ra_sdk.data.augment import normal_batch

    blob = read_engine(DEMO_ENGINE).network("recon")[1]
    calib = normal_batch("val", 16, start=1000)[:, None]
    fl = float_edges(blob, depth=2, tail=["x_ph"], one_channel=True, stem_pool=True)
    written = quantize(blob, calib, float_layers=fl, expand_resizes=False)
    model = onnx.load_from_string(written)
    assert sum(n.op_type == "Resize" for n in model.graph.node) == 5
    assert resizes_as_expand(model) == 5
    ops = [n.op_type for n in model.graph.node]
    assert "Resize" not in ops and ops.count("Expand") == 5
    assert onnx.load_from_string(quantize(blob, calib, float_layers=fl)).SerializeToString() == model.SerializeToString()  # the default
    x = normal_batch("test", 8, start=1300)[:, None]
    a = ort.InferenceSession(written, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    b = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert len(a) == len(b) > 1 and all(np.array_equal(p, q) for p, q in zip(a, b))
    trt = onnx.load_from_string(quantize(blob, calib, float_layers=fl, symmetric=True))
    assert sum(n.op_type == "Resize" for n in trt.graph.node) == 5
    # a Resize whose QuantizeLinear has another scale than its DequantizeLinear is a real
    # requantization, not a copy: it stays
    other = onnx.load_from_string(written)
    readers = {i: n for n in other.graph.node for i in n.input}
    q = readers[next(n for n in other.graph.node if n.op_type == "Resize").output[0]]
    scale = next(i for i in other.graph.initializer if i.name == q.input[1])  # shared with the DequantizeLinear
    other.graph.initializer.append(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(scale) * 2, "doubled_scale"))
    q.input[1] = "doubled_scale"
    assert resizes_as_expand(other) == 4


def test_a_float_stem_through_its_pool_quantizes_after_the_pool():
    """stem_pool: the one-channel stem's activation and its 2x2 pool stay float with it;
    the pool is not rewritten as a depthwise convolution, and the first int8 tensor is the
    pool's output (the network's first embedding then comes out float)."""
    import onnx
    from ra_sdk.export.quantize import float_edges, quantize

    from ra_sdk.data.augment import normal_batch

    blob = read_engine(DEMO_ENGINE).network("features")[1]
    assert float_edges(blob, one_channel=True) == ["/encoder/stem/stem.0/Conv"]
    fl = float_edges(blob, one_channel=True, stem_pool=True)
    assert fl == ["/encoder/stem/stem.0/Conv", "/encoder/stem/stem.2/LeakyRelu", "/encoder/pool/AveragePool"]
    q = onnx.load_from_string(quantize(blob, normal_batch("val", 16, start=1000)[:, None], float_layers=fl)).graph
    by_name = {n.name: n for n in q.node}
    producer = {o: n for n in q.node for o in n.output}
    assert by_name["/encoder/pool/AveragePool"].op_type == "AveragePool"
    assert producer[by_name["/encoder/stem/stem.2/LeakyRelu"].input[0]].name == "/encoder/stem/stem.0/Conv"  # float to float, no Q/DQ between
    assert producer[by_name["/encoder/pool/AveragePool"].input[0]].name == "/encoder/stem/stem.2/LeakyRelu"
    readers = [n for n in q.node if by_name["/encoder/pool/AveragePool"].output[0] in n.input]
    assert [n.op_type for n in readers] == ["QuantizeLinear"]
    assert sum(n.op_type == "AveragePool" for n in q.node) == 1  # the others became depthwise convolutions


def test_float_edges_are_the_first_layers_by_depth_and_the_output_head():
    """float_edges: the layers within `depth` layers of the input (by the longest path, so
    both branches of a stage that reads the stem count as depth 2) and the output's last
    layer with every node after it; and what the export keeps float is what runs float."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from ra_sdk.export.quantize import float_edges, quantize

    rng = np.random.default_rng(0)

    def conv(name, cin, cout, k, x, y):
        w = numpy_helper.from_array(rng.normal(0, 0.3, (cout, cin, k, k)).astype(np.float32), f"{name}_w")
        b = numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}_b")
        return helper.make_node("Conv", [x, w.name, b.name], [y], name=name, pads=[k // 2] * 4), [w, b]

    spec = [("stem", 1, 4, 3, "x", "s"), ("body", 4, 4, 3, "r", "a"), ("skip", 4, 4, 1, "r", "b"), ("deep", 4, 4, 3, "r2", "d"), ("last", 4, 1, 3, "d", "logit")]
    nodes, inits = [], []
    for s in spec:
        n, i = conv(*s)
        nodes.append(n)
        inits += i
    nodes.insert(1, helper.make_node("LeakyRelu", ["s"], ["r"], name="act"))
    nodes.insert(4, helper.make_node("Add", ["a", "b"], ["r2"], name="add"))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["x_ph"], name="sigmoid"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("x_ph", TensorProto.FLOAT, ["N", 1, 8, 8])], inits)
    blob = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    assert float_edges(blob) == []
    assert set(float_edges(blob, tail=["x_ph"])) == {"last", "sigmoid"}
    assert set(float_edges(blob, depth=1, tail=["x_ph"])) == {"stem", "last", "sigmoid"}
    assert set(float_edges(blob, depth=2)) == {"stem", "body", "skip"}
    assert set(float_edges(blob, depth=3)) == {"stem", "body", "skip", "deep"}
    assert set(float_edges(blob, one_channel=True)) == {"stem"}  # the only one that reads one channel
    with pytest.raises(Exception, match="no output 'y'"):
        float_edges(blob, tail=["y"])
    # the export's rewrite of a C -> 1 head (depthwise + a 1x1 channel sum of ones): the
    # channel sum belongs to the layer before it, so the whole head stays float
    from ra_sdk.export.onnx_export import one_channel_convs_as_depthwise

    rewritten = onnx.load_from_string(blob)
    assert one_channel_convs_as_depthwise(rewritten) == 1
    assert set(float_edges(rewritten.SerializeToString(), tail=["x_ph"])) == {"last/depthwise", "last/channel_sum", "sigmoid"}
    q = onnx.load_from_string(quantize(blob, rng.random((8, 1, 8, 8), dtype=np.float32), float_layers=float_edges(blob, depth=1, tail=["x_ph"])))
    producer = {o: n for n in q.graph.node for o in n.output}
    by_name = {n.name: n for n in q.graph.node}
    for name in ("stem", "last"):  # float weights: no DequantizeLinear feeds them
        assert by_name[name].input[1] not in producer, name
    assert producer[by_name["deep"].input[1]].op_type == "DequantizeLinear"
    assert producer[by_name["sigmoid"].input[0]].name == "last"  # the logit is never quantized
