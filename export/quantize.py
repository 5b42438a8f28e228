"""INT8 networks: static QDQ quantization with ONNX Runtime, calibrated on normal images.

The graph is prepared first (shape inference and ONNX Runtime's graph optimisations, which
fold BatchNorm into the convolutions), then every Conv and Gemm gets QuantizeLinear /
DequantizeLinear pairs: weights signed int8 per output channel (symmetric), activations
unsigned int8 with a zero point (U8S8: what ONNX Runtime fuses into int8 kernels on CPUs
with VNNI; signed activations left most convolutions in float in a trial, see the issue).
Layers named in ``float_layers`` are left out (the export's candidates name them with
:func:`float_edges`; ``benchmarks/bench_int8.py`` measures each). Left out means float in
the graph; ONNX Runtime still quantizes a left-out layer between int8 neighbours itself
when it loads the graph (per-tensor weights), so only the edges of the int8 part really
run float there. TensorRT takes only symmetric INT8 Q/DQ; ``symmetric=True`` makes that
variant from the same calibration (ra-sdk build --precision int8).

For ONNX Runtime, every 2x2 stride-2 AveragePool becomes the equal depthwise convolution
(weights 1/4) before quantizing: ONNX Runtime's int8 average pool (QLinearAveragePool) took
20% of the features network's time at 128x128, its depthwise QLinearConv a fraction of that
(``benchmarks/results/int8_choice_cpu.json``, "pool_rewrite"). In float the two are the
same sums (tests hold them equal); the fp32 networks of an engine keep the AveragePool.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ra_sdk._optional import import_onnxruntime
from ra_sdk.errors import ExportError

METHODS = ("minmax", "entropy", "percentile")


def _prepared(onnx_bytes: bytes, tmp: Path) -> Path:
    import_onnxruntime()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre = tmp / "fp32.onnx", tmp / "pre.onnx"
    src.write_bytes(onnx_bytes)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
    return pre


@functools.lru_cache(maxsize=4)
def _prepared_model(onnx_bytes: bytes) -> Any:
    """The prepared graph (:func:`_prepared`) in memory, made once per network: the export's
    candidates ask :func:`float_edges` about the same network several times. Read-only."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        return onnx.load(str(_prepared(onnx_bytes, Path(tmp))))


def pools_as_depthwise(model: Any, keep: Sequence[str] = ()) -> int:
    """Rewrite, in place, each AveragePool with a 2x2 kernel, stride 2 and no padding as a
    depthwise Conv (group = channels, weights 0.25, no bias), which ONNX Runtime runs as an
    int8 depthwise convolution. Needs the channel count from shape inference; a pool whose
    channels are unknown stays, and so do the pools named in ``keep`` (left out of the
    quantization: in float the AveragePool is the fast one). Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    shapes = {v.name: v.type.tensor_type.shape for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    nodes, n = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        shape = shapes.get(node.input[0]) if node.op_type == "AveragePool" else None
        simple = (
            attrs.get("kernel_shape") == [2, 2] and attrs.get("strides") == [2, 2] and not any(attrs.get("pads", [0])) and attrs.get("ceil_mode", 0) == 0
            and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID") and attrs.get("dilations", [1, 1]) == [1, 1]
        )
        channels = shape.dim[1].dim_value if shape is not None and len(shape.dim) == 4 else 0
        if not (simple and channels > 0) or node.name in keep:
            nodes.append(node)
            continue
        w = numpy_helper.from_array(np.full((channels, 1, 2, 2), 0.25, np.float32), f"{node.name}_depthwise_w")
        model.graph.initializer.append(w)
        nodes.append(helper.make_node("Conv", [node.input[0], w.name], list(node.output), name=f"{node.name}_depthwise", group=channels, kernel_shape=[2, 2], strides=[2, 2]))
        n += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return n


def resizes_as_expand(model: Any) -> int:
    """Rewrite, in place, each nearest-neighbour 2x Resize of a QDQ graph that sits between
    a DequantizeLinear and a QuantizeLinear of the same scale and zero point (what
    quantize_static makes of an upsampling layer) as the same copy on the uint8 tensor:
    Transpose to channels-last, Reshape to (N, H, 1, W, 1, C), Expand to (N, H, 2, W, 2,
    C), Reshape to (N, 2H, 2W, C), Transpose back. The values are identical (nearest
    neighbour copies; the Q/DQ pair around it is the identity on uint8). ONNX Runtime runs
    its int8 convolutions channels-last and cancels the two Transposes against its own, so
    the copy runs as a broadcast; its channels-last uint8 Resize takes the slow general
    path (0.29 against 0.08 ms per image for the last 64 -> 128 upsampling,
    ``benchmarks/results/int8_choice_cpu.json``, "resize_rewrite"). Needs the channel count
    and the spatial size from shape inference. Returns how many were rewritten."""
    from onnx import helper, numpy_helper, shape_inference

    inferred = shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    graph = list(model.graph.node)  # holds every node object, so that id() names each one for the whole rewrite
    producer = {o: n for n in graph for o in n.output}
    readers: dict[str, list[Any]] = {}
    for n in graph:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def same_params(dq: Any, q: Any) -> bool:
        pairs = list(zip(dq.input[1:], q.input[1:]))
        return len(pairs) == 2 and all(a in init and b in init and init[a].size == 1 and init[a].dtype == init[b].dtype and np.array_equal(init[a], init[b]) for a, b in pairs)

    replaced: dict[int, list[Any]] = {}  # by id(): node names may be empty or repeated
    dropped: set[int] = set()
    for n in graph:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type != "Resize" or (attrs.get("mode"), attrs.get("coordinate_transformation_mode"), attrs.get("nearest_mode")) != (b"nearest", b"asymmetric", b"floor"):
            continue
        dq, qs = producer.get(n.input[0]), readers.get(n.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(qs) != 1 or qs[0].op_type != "QuantizeLinear" or not same_params(dq, qs[0]):
            continue
        shape, out = dims.get(n.input[0], []), dims.get(n.output[0], [])
        if len(shape) != 4 or min(shape[1:]) <= 0 or out[1:] != [shape[1], 2 * shape[2], 2 * shape[3]]:
            continue
        c, h, w = shape[1:]
        p = f"{n.name or 'Resize'}_as_expand{len(replaced)}"  # unique even where nodes have no names
        shapes = {f"{p}_rows": [0, h, 1, w, 1, c], f"{p}_twice": [1, 1, 2, 1, 2, 1], f"{p}_up": [0, 2 * h, 2 * w, c]}
        model.graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in shapes.items())
        replaced[id(n)] = [
            helper.make_node("Transpose", [dq.input[0]], [f"{p}_nhwc"], name=f"{p}_nhwc", perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"{p}_nhwc", f"{p}_rows"], [f"{p}_rows_out"], name=f"{p}_rows"),
            helper.make_node("Expand", [f"{p}_rows_out", f"{p}_twice"], [f"{p}_twice_out"], name=f"{p}_twice"),
            helper.make_node("Reshape", [f"{p}_twice_out", f"{p}_up"], [f"{p}_up_out"], name=f"{p}_up"),
            helper.make_node("Transpose", [f"{p}_up_out"], [qs[0].output[0]], name=f"{p}_nchw", perm=[0, 3, 1, 2]),
        ]
        dropped.add(id(qs[0]))
        if len(readers[dq.output[0]]) == 1:
            dropped.add(id(dq))
    nodes = [m for n in graph if id(n) not in dropped for m in replaced.get(id(n), [n])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input} | {o.name for o in model.graph.output}
    unused = [i for i in model.graph.initializer if i.name not in used]  # the Resizes' sizes, the dropped pairs' scales
    for i in unused:
        model.graph.initializer.remove(i)
    return len(replaced)


def graph_nodes(onnx_bytes: bytes) -> list[tuple[str, str]]:
    """(name, op type) of every node of the prepared graph, in graph order."""
    return [(n.name, n.op_type) for n in _prepared_model(onnx_bytes).graph.node]


def quantizable_layers(onnx_bytes: bytes) -> list[str]:
    """Names of the Conv and Gemm nodes of the prepared graph, in graph order."""
    return [name for name, op in graph_nodes(onnx_bytes) if op in _LAYERS]


_LAYERS = ("Conv", "Gemm", "MatMul")


def float_edges(onnx_bytes: bytes, *, depth: int = 0, tail: Sequence[str] = (), one_channel: bool = False, stem_pool: bool = False) -> list[str]:
    """Nodes of the prepared graph to leave out of the quantization at the network's edges,
    the classic place where int8 costs most accuracy. What reads the float input (the stem)
    or writes a float output (the head) then runs float; a left-out layer between int8
    neighbours is quantized by ONNX Runtime itself when it loads the graph (its
    WeightBiasQuantization transformer: weights int8 per tensor), while TensorRT, strongly
    typed, runs it float.

    - ``depth``: the layers (Conv/Gemm) within ``depth`` layers of the input: the stem,
      which reads raw pixels through one channel, and the layers that read its output;
    - ``tail``: for each named output, the last layer before it and every node between
      (a channel sum of ones counts as part of the layer before it); for the
      reconstruction: the last convolution and its Sigmoid, whose input would
      otherwise be quantized in logit space, where one int8 step is up to 4/255 of the image
      once through the Sigmoid's slope;
    - ``one_channel``: every convolution that reads a single channel (the stem of a grey
      image network), for speed: it has only k*k multiply-adds per output, too few for
      ONNX Runtime's int8 kernels, and ran faster in float (features network 1.02 ->
      0.94..0.98 ms per image, benchmarks/results/int8_choice_cpu.json, "edges");
    - ``stem_pool`` (with ``one_channel``): the activation and the 2x2 average pool after
      such a convolution too (ONNX Runtime fuses the activation into the float
      convolution), so the float-to-int8 edge comes after the pool: a quarter of the values
      to reorder, quantize and transpose (``benchmarks/results/int8_choice_cpu.json``,
      "edges": the candidates with "float stem to the first pool").
    """
    from onnx import numpy_helper

    model = _prepared_model(onnx_bytes)
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    level: dict[str, int] = {}  # layers on the longest path from the input, this one included
    for n in nodes:  # graph order is topological
        up = max((level[producer[i].name] for i in n.input if i in producer), default=0)
        level[n.name] = up + (n.op_type in _LAYERS)
    keep = {n.name for n in nodes if n.op_type in _LAYERS and level[n.name] <= depth}
    weights = {i.name: i for i in model.graph.initializer}
    if one_channel:
        for n in nodes:
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            w = weights.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
            if w is not None and group == 1 and list(w.dims[1:2]) == [1]:
                keep.add(n.name)
                if stem_pool:
                    keep.update(_activation_and_pool_after(n, nodes))

    def channel_sum(n: Any) -> bool:  # a 1x1 Conv of ones (export.onnx_export.one_channel_convs_as_depthwise)
        w = weights.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        return w is not None and list(w.dims[2:]) == [1, 1] and bool(np.all(numpy_helper.to_array(w) == 1))

    for out in tail:
        if out not in producer:
            raise ExportError(f"the network has no output {out!r}")
        stack = [producer[out]]
        while stack:
            n = stack.pop()
            if n.name in keep:
                continue
            keep.add(n.name)
            if n.op_type not in _LAYERS or channel_sum(n):  # a channel sum belongs to the layer before it
                stack.extend(producer[i] for i in n.input if i in producer)
    return [n.name for n in nodes if n.name in keep]


_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Clip", "HardSigmoid")


def _activation_and_pool_after(layer: Any, nodes: Sequence[Any]) -> list[str]:
    """The elementwise activations that follow ``layer`` one after the other (each the only
    reader of the one before), then a 2x2 stride-2 AveragePool if one comes next: their node
    names, in order; empty when something else comes first."""
    from onnx import helper

    readers: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    out, n = [], layer
    while len(nxt := readers.get(n.output[0], [])) == 1:
        n = nxt[0]
        if n.op_type in _ACTIVATIONS:
            out.append(n.name)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "AveragePool" and attrs.get("kernel_shape") == [2, 2] and attrs.get("strides") == [2, 2]:
            out.append(n.name)
        break
    return out


def quantize(onnx_bytes: bytes, calib: np.ndarray, *, method: str = "minmax", float_layers: Sequence[str] = (), symmetric: bool = False, batch: int = 16, op_types: Sequence[str] | None = None, depthwise_pools: bool = True,
             expand_resizes: bool = True) -> bytes:
    """A QDQ int8 copy of an fp32 ONNX network (float32 inputs and outputs).

    Args:
        calib: (N, 1, H, W) float32 normal images (never test images).
        method: activation range calibration: "minmax", "entropy" or "percentile" (99.999).
        float_layers: node names (of the prepared graph) left unquantized.
        symmetric: signed int8 activations with zero point 0 (TensorRT's form); the
            AveragePool rewrite (:func:`pools_as_depthwise`) is for ONNX Runtime only.
        depthwise_pools: that rewrite (on by default; off to measure what it gives).
        expand_resizes: the upsampling rewrite of :func:`resizes_as_expand` (ONNX Runtime
            only, like the pool rewrite; on by default, off to measure what it gives).
    """
    import_onnxruntime()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in METHODS:
        raise ExportError(f"unknown int8 calibration method {method!r}; valid: {', '.join(METHODS)}")
    calib = np.ascontiguousarray(calib, dtype=np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calib[i : i + batch]} for i in range(0, len(calib), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory() as tmp:
        pre = _prepared(onnx_bytes, Path(tmp))
        if depthwise_pools and not symmetric:
            import onnx

            model = onnx.load(str(pre))
            if pools_as_depthwise(model, keep=float_layers):
                onnx.save(model, str(pre))
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=cm, nodes_to_exclude=list(float_layers), op_types_to_quantize=list(op_types) if op_types else None,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
        if expand_resizes and not symmetric:
            import onnx

            model = onnx.load(str(out))
            if resizes_as_expand(model):
                return bytes(model.SerializeToString())
        return out.read_bytes()


def info(method: str, calib_desc: str, n: int, float_layers: Mapping[str, Sequence[str]], fidelity: dict[str, Any]) -> dict[str, Any]:
    """What an engine records of its int8 networks (shown by ra-sdk inspect); ``float_layers``:
    per network, the nodes left out of the quantization (see :func:`float_edges`)."""
    return {
        "method": method, "activations": "uint8, asymmetric, per tensor", "weights": "int8, symmetric, per output channel",
        "format": "QDQ (ONNX Runtime quantize_static; 2x2 average pools as depthwise Conv, 2x nearest upsampling as a uint8 Expand)", "calibration": calib_desc, "calibration_images": n,
        "float_layers": {k: list(v) for k, v in float_layers.items()}, "fidelity": fidelity, "passed": bool(fidelity.get("passed")),
    }


def add_int8(engine: Any, calib: np.ndarray, *, method: str = "minmax", float_layers: Sequence[str] | Mapping[str, Sequence[str]] = (), networks: Sequence[str] | None = None,
             depthwise_pools: bool = True, expand_resizes: bool = True, cache: dict | None = None) -> Any:
    """A copy of ``engine`` (in memory) with ``<network>_int8`` networks beside fp32, for
    ``networks`` (default: every network); a network without one runs fp32 at int8.

    Args:
        float_layers: nodes left out of the quantization, for every network or per
            network name.
        cache: quantized graphs by (network, method, float layers, pool rewrite), so that
            candidates sharing a network quantize it once (the same calibration images).
    """
    import copy

    from ra_sdk.engine import Engine

    meta = copy.deepcopy(engine.meta)
    members = dict(engine.members)
    cache = {} if cache is None else cache
    for name in [n for n in engine.meta.networks if "_" not in n and (networks is None or n in networks)]:
        spec, blob = engine.network(name)
        fl = tuple(float_layers.get(name, ()) if isinstance(float_layers, Mapping) else float_layers)
        key = (name, method, fl, depthwise_pools, expand_resizes)
        if key not in cache:
            cache[key] = quantize(blob, calib, method=method, float_layers=fl, depthwise_pools=depthwise_pools, expand_resizes=expand_resizes)
        members[f"{name}_int8.onnx"] = cache[key]
        meta.networks[f"{name}_int8"] = type(spec)(f"{name}_int8.onnx", dict(spec.inputs), list(spec.outputs), "int8")
    return Engine(engine.path, meta, members)


def without_int8(engine: Any) -> Any:
    """A copy of ``engine`` (in memory) without its int8 networks and their record: the
    fp32 base that int8 candidates are made from."""
    import copy

    from ra_sdk.engine import Engine

    meta = copy.deepcopy(engine.meta)
    meta.networks = {k: v for k, v in meta.networks.items() if not k.endswith("_int8")}
    meta.source = {k: v for k, v in (meta.source or {}).items() if k != "int8"}
    return Engine(engine.path, meta, {k: v for k, v in engine.members.items() if not k.endswith("_int8.onnx")})


def scores(engine: Any, images: np.ndarray, precision: str) -> np.ndarray:
    """Image scores of ``engine`` at ``precision`` with ONNX Runtime on the CPU (the product's scorer)."""
    from ra_sdk.scorer import Scorer

    with Scorer(engine, backend="onnxruntime", device="cpu", precision=precision) as sc:
        return sc.score(images, maps=False, recons=False)[1]


def rel_rms(s: np.ndarray, ref: np.ndarray) -> float:
    """Relative RMS of a change of scores: RMS(s - ref) / RMS(ref)."""
    return float(np.sqrt(np.mean((s - ref) ** 2)) / max(float(np.sqrt(np.mean(ref**2))), 1e-12))


def fidelity(engine: Any, images: np.ndarray, anomalous: np.ndarray | None = None, *, percentile: float = 95.0, threshold: float | None = None, reference: np.ndarray | None = None) -> dict[str, Any]:
    """int8 against fp32 image scores of ``engine`` on ``images`` (B, H, W), with the
    product's scorer: Spearman, identical flags at ``threshold`` (default: the
    ``percentile`` of the fp32 normals' scores) and (with ``anomalous`` labels) the AUROC
    change. ``reference``: the fp32 scores when already known (candidates that share the
    fp32 networks score them once). ``passed`` applies the bar:
    Spearman >= 0.995, flags identical on >= 99%, |AUROC change| <= 0.01."""
    from ra_sdk import metrics

    a = scores(engine, images, "fp32") if reference is None else np.asarray(reference, np.float64)
    b = scores(engine, images, "int8")
    normal = np.ones(len(a), bool) if anomalous is None else ~anomalous
    thr = float(np.percentile(a[normal], percentile)) if threshold is None else threshold
    out: dict[str, Any] = {
        "images": len(a), "spearman": metrics.spearman(a, b), "flags_identical": float(np.mean((a > thr) == (b > thr))),
        "max_score_rel_diff": float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12))),
        "score_rel_rms": rel_rms(b, a),
    }
    if anomalous is not None and anomalous.any() and not anomalous.all():
        out["auroc_fp32"], out["auroc_int8"] = metrics.auroc(a, anomalous), metrics.auroc(b, anomalous)
        out["auroc_change"] = out["auroc_int8"] - out["auroc_fp32"]
    out["passed"] = out["spearman"] >= 0.995 and out["flags_identical"] >= 0.99 and abs(out.get("auroc_change", 0.0)) <= 0.01
    return out
