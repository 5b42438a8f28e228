"""Checkpoint -> ONNX networks -> portable bundle, as small composable steps.

    net, cfg = load_checkpoint(ckpt)             # torch module + its config
    recon = to_onnx(net, "recon")                # bytes; x -> x_ph, emb0..embN
    check_parity(net, "recon", recon)            # ONNX Runtime vs PyTorch, max abs <= 1e-4
    recon16 = to_fp16(recon)                     # FP16 graph, float32 I/O (TensorRT 11 style)
    write_bundle(out, cfg, {"recon": recon, ...})
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ra_sdk import __version__
from ra_sdk._optional import import_onnxruntime
from ra_sdk.configs import ModelConfig
from ra_sdk.engine import EngineMeta, Network, network_spec, output_names, sha256, write_engine
from ra_sdk.errors import ExportError
from ra_sdk.preprocess import Preset
from ra_sdk.scoring import ScoreConfig

log = logging.getLogger(__name__)
OPSET = 17


def _module(net: Any, network: str) -> Any:
    from ra_sdk.network import network_module

    return network_module(net, network)


def to_onnx(net: Any, network: str = "recon", *, opset: int = OPSET, metadata: dict[str, str] | None = None, one_channel_rewrite: bool = True) -> bytes:
    """Export ``recon`` (x -> x_ph, embeddings) or ``features`` (x -> embeddings) to ONNX
    with a dynamic batch axis, named inputs/outputs and metadata props; one-output-channel
    convolutions as :func:`one_channel_convs_as_depthwise` (off only to measure it)."""
    import onnx
    import torch

    if opset < 17:
        raise ExportError(f"opset {opset} is too old; ra-sdk exports opset >= 17")
    cfg: ModelConfig = net.cfg
    module = _module(net.cpu().eval(), network)
    names = output_names(network, len(cfg.channels))
    x = torch.rand(2, cfg.in_channels, cfg.image_size, cfg.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{network}.onnx"
        # PRESERVE + no constant folding: BatchNorm is not folded into the convolutions, so
        # every weight stays an initializer under its state-dict name and the engine file is
        # a complete checkpoint (train.checkpoint.weights_from_engine). ONNX Runtime and
        # TensorRT fuse Conv+BN themselves when they load the graph.
        torch.onnx.export(
            module, (x,), str(path), input_names=["x"], output_names=names, opset_version=opset,
            dynamic_axes={"x": {0: "batch"}, **{n: {0: "batch"} for n in names}}, dynamo=False,
            training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
        )
        model = onnx.load(str(path))
    if one_channel_rewrite:
        one_channel_convs_as_depthwise(model)
    for k, v in {"ra_sdk.version": __version__, "ra_sdk.network": network, "ra_sdk.model": json.dumps(cfg.to_dict()), **(metadata or {})}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v
    onnx.checker.check_model(model)
    return model.SerializeToString()


def one_channel_convs_as_depthwise(model: Any) -> int:
    """Rewrite, in place, each Conv with one output channel (the reconstruction's last
    layer, C -> 1) as the same sums in two steps: a depthwise Conv (its weight reshaped to
    (C, 1, k, k)), then a 1x1 Conv with weights 1 and the bias that sums the C maps.
    ONNX Runtime pads the output channels of a convolution to its vector block (16) in its
    NCHWc layout, so a C -> 1 convolution cost as much as C -> 16: a sixth of the whole
    fp32 reconstruction, and a quarter of the int8 one, whose head stays float (ONNX
    Runtime's profiler; before and after: benchmarks/results/int8_choice_cpu.json,
    "head_rewrite"). The channel sum is a convolution, not
    a ReduceSum: ONNX Runtime's ReduceSum summed in another order for a batch of one, and a
    score must not depend on its batch. The weight and bias initializers keep their names and
    shapes, so the engine stays a complete checkpoint. Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes, n = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = inits.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if w is None or len(w.dims) != 4 or w.dims[0] != 1 or w.dims[1] < 2 or w.dims[2] * w.dims[3] < 2 or attrs.get("group", 1) != 1:
            nodes.append(node)
            continue
        c, base = int(w.dims[1]), node.name or node.output[0]
        shape = numpy_helper.from_array(np.array([c, 1, w.dims[2], w.dims[3]], np.int64), f"{base}/depthwise_shape")
        ones = numpy_helper.from_array(np.ones((1, c, 1, 1), np.float32), f"{base}/channel_sum_w")
        model.graph.initializer.extend([shape, ones])
        bias = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
        nodes += [
            helper.make_node("Reshape", [node.input[1], shape.name], [f"{base}/depthwise_w"], name=f"{base}/depthwise_weight"),
            helper.make_node("Conv", [node.input[0], f"{base}/depthwise_w"], [f"{base}/depthwise_output"], name=f"{base}/depthwise", group=c,
                             **{k: v for k, v in attrs.items() if k != "group"}),
            helper.make_node("Conv", [f"{base}/depthwise_output", ones.name, *bias], list(node.output), name=f"{base}/channel_sum"),
        ]
        n += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return n


def check_parity(net: Any, network: str, onnx_bytes: bytes, images: np.ndarray | None = None, *, atol: float = 1e-4) -> dict[str, float]:
    """Max abs difference of every output, ONNX Runtime (CPU) vs PyTorch; raises above atol."""
    import torch

    ort = import_onnxruntime()

    cfg: ModelConfig = net.cfg
    if images is None:
        rng = np.random.default_rng(0)
        images = rng.random((4, cfg.in_channels, cfg.image_size, cfg.image_size), dtype=np.float32)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": images})
    with torch.no_grad():
        ref = _module(net.cpu().eval(), network)(torch.from_numpy(images))
    diffs = {n: float(np.abs(g - r.numpy()).max()) for n, g, r in zip(output_names(network, len(cfg.channels)), got, ref)}
    worst = max(diffs, key=lambda k: diffs[k])
    if diffs[worst] > atol:
        raise ExportError(f"ONNX {network} output {worst} differs from PyTorch by {diffs[worst]:.3g} > {atol}")
    return diffs


def to_fp16(onnx_bytes: bytes) -> bytes:
    """FP16 weights and arithmetic with float32 inputs and outputs (how TensorRT 11, which
    is strongly typed only, takes FP16)."""
    import onnx

    import_onnxruntime()  # telemetry off before the library loads
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(onnx_bytes), keep_io_types=True)
    return model.SerializeToString()


def _versions() -> dict[str, Any]:
    import importlib.metadata as md

    out: dict[str, Any] = {"ra_sdk": __version__, "opset": OPSET}
    for d in ("torch", "onnx", "onnxruntime"):
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def _heldout(checkpoint: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The validation studies the checkpoint's run held out (``split.json`` beside its
    ``best``/``last`` folder, or what an engine being re-exported carries): the default
    normals of ``ra-sdk calibrate``."""
    carried = config.get("engine_source", {}).get("heldout")
    if carried:
        return dict(carried)
    split = checkpoint.parent / "split.json"
    if checkpoint.is_dir() and split.is_file():
        d = json.loads(split.read_text())
        return {"root": d["root"], "studies": d["val"]}
    return None


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    score: ScoreConfig | None = None,
    fp16: bool = False,
    include_weights: bool = False,
    parity_images: np.ndarray | None = None,
    int8: bool = False,
    int8_calib: str | Path = "auto",
    int8_images: int = 512,
    int8_method: str = "minmax",
) -> Path:
    """The whole chain: checkpoint (a folder, or an engine file to re-export) -> checked
    ONNX networks -> ``out`` bundle.

    The ``features`` network is added when the score config uses it. Calibration is added
    later by :func:`ra_sdk.calibration.calibrate` (never baked into the graph). With
    ``int8``, QDQ int8 networks are added where they pass the fidelity bar
    (:func:`add_int8_networks`); when none does, ExportError says why, with the figures.
    """
    from ra_sdk.train.checkpoint import load_model

    checkpoint = Path(checkpoint)
    net, config = load_model(checkpoint)
    cfg = ModelConfig.from_dict(config["model"])
    score = score or ScoreConfig()
    networks = ["recon"] + (["features"] if score.perceptual == "features" else [])
    members: dict[str, bytes] = {}
    nets: dict[str, Network] = {}
    parity: dict[str, Any] = {}
    for name in networks:
        blob = to_onnx(net, name)
        parity[name] = check_parity(net, name, blob, parity_images)
        members[f"{name}.onnx"] = blob
        nets[name] = network_spec(cfg, name, file=f"{name}.onnx")
        if fp16:
            members[f"{name}_fp16.onnx"] = to_fp16(blob)
            nets[f"{name}_fp16"] = network_spec(cfg, name, file=f"{name}_fp16.onnx", precision="fp16")
    if checkpoint.is_file():  # an engine file: the weights it keeps, as safetensors
        from safetensors.torch import save as save_st

        weights = save_st({k: v.contiguous() for k, v in net.state_dict().items()})
    else:
        weights = (checkpoint / "model.safetensors").read_bytes()
    if include_weights:
        members["model.safetensors"] = weights
    meta = EngineMeta(
        kind="onnx",
        model=cfg,
        preset=Preset.from_dict(config["preset"]),
        score=score,
        networks=nets,
        versions=_versions(),
        source={
            # re-exporting an engine keeps the provenance of the checkpoint it came from
            "checkpoint": config.get("engine_source", {}).get("checkpoint", checkpoint.name),
            "checkpoint_sha256": config.get("engine_source", {}).get("checkpoint_sha256", sha256(weights)),
            "objective": config.get("train", {}).get("objective"),
            "progress": config.get("progress", {}),
            "parity_max_abs": parity,
            **({"heldout": heldout} if (heldout := _heldout(checkpoint, config)) else {}),
        },
    )
    log.info("export parity (max abs, ONNX Runtime vs PyTorch): %s", parity)
    if int8:
        meta, members = add_int8_networks(meta, members, Path(out), calib=int8_calib, n=int8_images, method=int8_method)
    return write_engine(out, meta, members)


#: candidates, fastest first (the first to pass the bar is kept): the int8 networks; for the
#: recon network the edges left out of the QDQ quantization
#: (:func:`ra_sdk.export.quantize.float_edges`) as layers from the input, or None for none
#: and no output head either; and the networks whose one-channel stem stays float through
#: its activation and first pool (``stem_pool``), not only its convolution. Full int8 first;
#: then the reconstruction's output head left out, then also its first layers (1, then 2
#: deep); at 2 deep the float stem through the pool in both networks, then in recon only,
#: then in neither; then the features network alone, then recon alone. In every candidate
#: the layers that read one channel stay float, for speed. Left out is not always float:
#: ONNX Runtime quantizes a left-out layer between int8 neighbours itself (weights per
#: tensor) when it loads the graph, and the fidelity bar is measured as it runs. How each
#: fares on the bundled model, both ways: benchmarks/results/int8_choice_cpu.json, "edges".
BOTH = ("recon", "features")
INT8_CANDIDATES: tuple[tuple[tuple[str, ...], int | None, tuple[str, ...]], ...] = (
    (BOTH, None, BOTH), (BOTH, 0, BOTH), (BOTH, 1, BOTH), (BOTH, 2, BOTH), (BOTH, 2, ("recon",)), (BOTH, 2, ()),
    (("features",), None, ("features",)), (("features",), None, ()), (("recon",), None, ("recon",)), (("recon",), None, ()),
)


def candidate_name(nets: Sequence[str], depth: int | None, stem_pool: Sequence[str] = ()) -> str:
    """How an int8 candidate is named in the engine's record: "recon+features", with the
    reconstruction's edges left out of the quantization as "(recon unquantized: output
    head, first 2 layers deep)", and the networks whose stem stays float through its first
    pool as "[float stem to the first pool: recon]"."""
    name = "+".join(nets)
    if depth is not None and "recon" in nets:
        name += " (recon unquantized: output head" + (f", first {depth} layer{'s' if depth > 1 else ''} deep)" if depth else ")")
    if stem_pool:
        name += f" [float stem to the first pool: {'+'.join(stem_pool)}]"
    return name


def int8_float_layers(engine: Any, nets: Sequence[str], depth: int | None, stem_pool: Sequence[str] = ()) -> dict[str, list[str]]:
    """Per network of a candidate, the nodes left out of the quantization: those reading one
    channel (for the networks in ``stem_pool``, with the activation and pool after them),
    and for the reconstruction with ``depth`` set, its output head and its first ``depth``
    layers."""
    from .quantize import float_edges

    out = {}
    for net in nets:
        edges = depth if net == "recon" else None
        out[net] = float_edges(engine.network(net)[1], one_channel=True, stem_pool=net in stem_pool, depth=edges or 0, tail=["x_ph"] if edges is not None else ())
    return out


def int8_calibration(preset: Preset, calib: str | Path, heldout: dict[str, Any] | None, n: int) -> tuple[np.ndarray, str]:
    """(N, 1, S, S) normal images to calibrate int8 on (the validation side, never test):
    the normals of :func:`ra_sdk.calibration.normal_images` ("auto", "embedded" from index
    1000, or a folder), at most ``n``."""
    from ra_sdk.calibration import normal_images

    images, desc = normal_images(calib, preset, n=n, heldout=heldout, start=1000, option="--calib")
    if len(images) > n:
        images, desc = images[:n], f"{desc}; the first {n}"
    return images[:, None], desc


def add_int8_networks(meta: EngineMeta, members: dict[str, bytes], path: Path, *, calib: str | Path, n: int, method: str) -> tuple[EngineMeta, dict[str, bytes]]:
    """Quantize the networks (U8S8 QDQ, :mod:`ra_sdk.export.quantize`) and keep the first
    of :data:`INT8_CANDIDATES` (fastest first) that passes the fidelity bar on validation
    images: Spearman >= 0.995, flags identical on >= 99%, |AUROC change| <= 0.01
    (validation synthetic anomalies for brain MRI; a fifth of the calibration normals held
    back otherwise). Every candidate tried is recorded with its figures."""
    from ra_sdk.engine import Engine
    from ra_sdk.evaluation import synthetic_suite

    from .quantize import add_int8, fidelity, info, scores

    images, desc = int8_calibration(meta.preset, calib, meta.source.get("heldout"), n)
    if meta.preset.modality == "MR":
        suite = synthetic_suite(96, 12, split="val", seed=5, size=meta.preset.size)
        probe = np.concatenate([suite.normals, *[imgs for imgs, _ in suite.sets.values()]])
        anomalous: np.ndarray | None = np.r_[np.zeros(len(suite.normals), bool), np.ones(len(probe) - len(suite.normals), bool)]
        calib_imgs = images
    else:
        k = max(10, len(images) // 5)
        probe, anomalous, calib_imgs = images[-k:, 0], None, images[:-k]
    base = Engine(path, meta, members)
    reference = scores(base, probe, "fp32")  # the fp32 networks are the same in every candidate
    attempts: dict[str, Any] = {}
    cache: dict = {}  # a network's int8 graph is made once for the candidates that share it
    tried: set = set()
    for nets, depth, stem_pool in INT8_CANDIDATES:
        if not all(name in meta.networks for name in nets):
            continue
        name = candidate_name(nets, depth, stem_pool)
        float_layers = int8_float_layers(base, nets, depth, stem_pool)
        key = tuple((k, tuple(v)) for k, v in sorted(float_layers.items()))
        if key in tried:  # e.g. "first 1 layer deep" when the stem already stays float (one channel)
            continue
        tried.add(key)
        candidate = add_int8(base, calib_imgs, method=method, networks=nets, float_layers=float_layers, cache=cache)
        f = fidelity(candidate, probe, anomalous, reference=reference)
        attempts[name] = f
        log.info("int8 %s: %s", name, f)
        if f["passed"]:
            record = {**info(method, desc, len(calib_imgs), float_layers, f), "networks": list(nets), "candidate": name, "attempts": attempts, "calib_source": str(calib), "calib_n": n}
            candidate.meta.source = {**candidate.meta.source, "int8": record}
            return candidate.meta, candidate.members
    figures = "; ".join(f"{k}: Spearman {v['spearman']:.4f}, flags identical {v['flags_identical']:.1%}" + (f", AUROC change {v['auroc_change']:+.4f}" if "auroc_change" in v else "") for k, v in attempts.items())
    raise ExportError(f"no int8 network passes the fidelity bar (Spearman >= 0.995, flags identical >= 99%, |AUROC change| <= 0.01): {figures}; export without --int8")
