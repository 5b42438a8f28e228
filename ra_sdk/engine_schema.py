"""The one schema of an engine's ``meta.json``: types and ranges of every field the
runtime reads, checked on load before anything is built from it.

Engine files are untrusted input (a file from a colleague, a download, a tampered copy):
a malformed field fails with one line naming the field, what it must be and what came.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import EngineError

NETWORK_NAMES = ("recon", "features")
PRECISIONS = ("fp32", "fp16", "int8")
KINDS = ("onnx", "tensorrt")
#: member names: flat, plain file names (no folders, no "..", no hidden files)
MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_NORMALS = 1_000_000


class _Check:
    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, what: str, got: Any) -> EngineError:
        shown = repr(got)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return EngineError(f"{self.where}: meta.json field {key} must be {what}, got {shown}")

    def obj(self, v: Any, key: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(key, "an object", v)
        return v

    def get(self, d: dict[str, Any], key: str, path: str) -> Any:
        if key not in d:
            raise EngineError(f"{self.where}: meta.json has no field {path}")
        return d[key]

    def integer(self, v: Any, key: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.fail(key, f"an integer in [{lo}, {hi}]", v)
        return v

    def number(self, v: Any, key: str, lo: float = -math.inf, hi: float = math.inf, *, open_lo: bool = False) -> float:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and (lo < v if open_lo else lo <= v) and v <= hi
        if not ok:
            lo_s = "(" if open_lo else "["
            raise self.fail(key, f"a finite number in {lo_s}{lo:g}, {hi:g}]", v)
        return float(v)

    def boolean(self, v: Any, key: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(key, "true or false", v)
        return v

    def text(self, v: Any, key: str, choices: tuple[str, ...] | None = None, max_len: int = 128) -> str:
        if not isinstance(v, str) or not 0 < len(v) <= max_len or (choices is not None and v not in choices):
            raise self.fail(key, f"one of {', '.join(choices)}" if choices else f"a text of 1-{max_len} characters", v)
        return v

    def pair(self, v: Any, key: str, lo: float, hi: float) -> tuple[float, float]:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise self.fail(key, "a pair [low, high]", v)
        a, b = self.number(v[0], f"{key}[0]", lo, hi), self.number(v[1], f"{key}[1]", lo, hi)
        if not a < b:
            raise self.fail(key, f"a pair with low < high in [{lo:g}, {hi:g}]", v)
        return a, b


def check_meta(d: Any, where: str = "engine") -> None:
    """Raise EngineError (one line) unless ``d`` is a well-formed engine meta.json."""
    c = _Check(where)
    d = c.obj(d, "(top level)")
    c.text(c.get(d, "kind", "kind"), "kind", KINDS)

    m = c.obj(c.get(d, "model", "model"), "model")
    c.text(c.get(m, "name", "model.name"), "model.name")
    ch = c.get(m, "channels", "model.channels")
    if not isinstance(ch, list) or not 1 <= len(ch) <= 8:
        raise c.fail("model.channels", "a list of 1 to 8 channel counts", ch)
    for i, v in enumerate(ch):
        c.integer(v, f"model.channels[{i}]", 1, 4096)
    c.integer(c.get(m, "zdim", "model.zdim"), "model.zdim", 1, 8192)
    size = c.integer(c.get(m, "image_size", "model.image_size"), "model.image_size", 16, 2048)
    c.integer(m.get("in_channels", 1), "model.in_channels", 1, 1)
    if size % 2 ** len(ch):
        raise c.fail("model.image_size", f"divisible by 2^{len(ch)} (one halving per scale)", size)

    p = c.obj(c.get(d, "preset", "preset"), "preset")
    c.text(c.get(p, "name", "preset.name"), "preset.name")
    c.text(c.get(p, "modality", "preset.modality"), "preset.modality", max_len=16)
    c.text(p.get("normalisation", "minmax"), "preset.normalisation", ("minmax", "percentile"))
    c.pair(p.get("clip", [0, 100]), "preset.clip", 0, 100)
    c.boolean(p.get("apply_voi", True), "preset.apply_voi")
    c.boolean(p.get("pad_to_square", True), "preset.pad_to_square")
    if c.integer(c.get(p, "size", "preset.size"), "preset.size", 16, 2048) != size:
        raise c.fail("preset.size", f"the model's image size {size}", p["size"])
    c.number(p.get("min_foreground", 0.0), "preset.min_foreground", 0, 1)
    c.number(p.get("foreground_level", 0.05), "preset.foreground_level", 0, 1)
    c.pair(p.get("slice_range", [0, 1]), "preset.slice_range", 0, 1)

    s = c.obj(c.get(d, "score", "score"), "score")
    from .scoring import AGGREGATIONS, PERCEPTUAL_KINDS

    c.text(s.get("perceptual", "structural"), "score.perceptual", PERCEPTUAL_KINDS)
    c.boolean(s.get("use_clahe", True), "score.use_clahe")
    c.number(s.get("sigma", 2.0), "score.sigma", 0, 16)
    c.boolean(s.get("ssim_gaussian", False), "score.ssim_gaussian")
    c.text(s.get("aggregation", "mean"), "score.aggregation", AGGREGATIONS)
    c.number(s.get("topk", 0.01), "score.topk", 0, 1, open_lo=True)
    c.text(s.get("study_aggregation", "max"), "score.study_aggregation", ("max", "topk"))
    c.integer(s.get("study_k", 3), "score.study_k", 1, 10_000)
    c.number(s.get("foreground", 0.0), "score.foreground", 0, 0.99)

    nets = c.obj(c.get(d, "networks", "networks"), "networks")
    if "recon" not in nets or len(nets) > 8:
        raise c.fail("networks", "an object with a 'recon' network (at most 8 networks)", sorted(nets))
    for name, n in nets.items():
        base, _, prec = name.partition("_")
        if base not in NETWORK_NAMES or (prec and prec not in PRECISIONS):
            raise c.fail("networks", f"keyed by {'/'.join(NETWORK_NAMES)} with an optional _fp16/_int8 suffix", name)
        n = c.obj(n, f"networks.{name}")
        f = c.get(n, "file", f"networks.{name}.file")
        if not isinstance(f, str) or not MEMBER_NAME.match(f) or ".." in f:
            raise c.fail(f"networks.{name}.file", "a plain member file name", f)
        inputs = c.obj(c.get(n, "inputs", f"networks.{name}.inputs"), f"networks.{name}.inputs")
        if list(inputs) != ["x"] or not isinstance(inputs["x"], list) or len(inputs["x"]) != 4:
            raise c.fail(f"networks.{name}.inputs", "{'x': [batch, 1, size, size]}", inputs)
        for i, v in enumerate(inputs["x"]):
            c.integer(v, f"networks.{name}.inputs.x[{i}]", -1, 1 << 20)
        outs = c.get(n, "outputs", f"networks.{name}.outputs")
        if not isinstance(outs, list) or not 1 <= len(outs) <= 16 or not all(isinstance(o, str) and 0 < len(o) <= 32 for o in outs):
            raise c.fail(f"networks.{name}.outputs", "a list of 1 to 16 output names", outs)
        if c.text(n.get("precision", "fp32"), f"networks.{name}.precision", PRECISIONS) != (prec or "fp32") and d["kind"] == "onnx":
            raise c.fail(f"networks.{name}.precision", f"{prec or 'fp32'} (as its key says)", n.get("precision"))
    if s.get("perceptual") == "features" and "features" not in nets:
        raise c.fail("networks", "an object with a 'features' network (the score uses features)", sorted(nets))

    cal = d.get("calibration")
    if cal is not None:
        cal = c.obj(cal, "calibration")
        ns = c.get(cal, "normal_scores", "calibration.normal_scores")
        if not isinstance(ns, list) or not 10 <= len(ns) <= MAX_NORMALS:
            raise c.fail("calibration.normal_scores", f"a list of 10 to {MAX_NORMALS:,} scores", f"{type(ns).__name__} of {len(ns) if isinstance(ns, list) else '?'}")
        prev = -math.inf
        for i, v in enumerate(ns):
            x = c.number(v, f"calibration.normal_scores[{i}]", 0)
            if x < prev:
                raise c.fail("calibration.normal_scores", "sorted ascending", f"[{i - 1}]={prev:g} > [{i}]={x:g}")
            prev = x
        c.number(c.get(cal, "threshold", "calibration.threshold"), "calibration.threshold", 0)
        c.number(cal.get("percentile", 95.0), "calibration.percentile", 0, 100, open_lo=True)
        c.number(c.get(cal, "pixel_threshold", "calibration.pixel_threshold"), "calibration.pixel_threshold", 0)
        if not isinstance(cal.get("source", ""), str):
            raise c.fail("calibration.source", "a text", cal.get("source"))

    for key in ("build", "versions", "source"):
        c.obj(d.get(key, {}), key)
    q = d.get("source", {}).get("int8")
    if q is not None:
        q = c.obj(q, "source.int8")
        c.boolean(q.get("passed", False), "source.int8.passed")
        nets_q = q.get("networks", [])
        if not isinstance(nets_q, list) or not all(isinstance(x, str) for x in nets_q):
            raise c.fail("source.int8.networks", "a list of network names", nets_q)
        fl = q.get("float_layers", {})
        names = list(fl.values()) if isinstance(fl, dict) else [fl]
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in names):
            raise c.fail("source.int8.float_layers", "node names per network", fl)
    held = d.get("source", {}).get("heldout")
    if held is not None:
        held = c.obj(held, "source.heldout")
        c.text(c.get(held, "root", "source.heldout.root"), "source.heldout.root", max_len=4096)
        ids = c.get(held, "studies", "source.heldout.studies")
        if not isinstance(ids, list) or not 0 < len(ids) <= MAX_NORMALS or not all(isinstance(i, str) and 0 < len(i) <= 4096 for i in ids):
            raise c.fail("source.heldout.studies", "a list of study ids", ids)
    if d["kind"] == "tensorrt":
        c.integer(d.get("build", {}).get("max_batch"), "build.max_batch", 1, 1 << 16)
    sums = c.obj(c.get(d, "checksums", "checksums"), "checksums")
    for name, digest in sums.items():
        if not MEMBER_NAME.match(name) or ".." in name:
            raise c.fail("checksums", "keyed by plain member file names", name)
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise c.fail(f"checksums.{name}", "a sha256 hex digest", digest)
    for name, n in nets.items():
        if n["file"] not in sums:
            raise c.fail(f"networks.{name}.file", "a member listed in checksums", n["file"])


def what_is(head: bytes) -> str:
    """A guess at what a file that is not an engine bundle is, for the error message."""
    if b"ftrt" in head[:32] or b"ptrt" in head[:32]:
        return ("a raw TensorRT plan, not an ra-sdk engine: engines carry their preset, score and calibration; "
                "build one from an ONNX bundle with: ra-sdk build BUNDLE --out ENGINE.plan")
    if head[:1] == b"\x08":  # an ONNX ModelProto starts with its ir_version field
        return ("a plain ONNX model, not an ra-sdk engine: engines carry their preset, score and calibration; "
                "export one from a checkpoint with: ra-sdk export CHECKPOINT --out MODEL.onnx-bundle")
    return "not an ra-sdk engine file (expected a zip bundle written by ra-sdk export or ra-sdk build)"


def check_members(path: Any, kind: str, networks: dict[str, bytes]) -> None:
    """What each network's bytes must be before a runtime parses them: an ONNX model
    with no external data (ONNX Runtime would open those files, relative to the current
    folder), for an ONNX bundle."""
    if kind != "onnx":
        return
    for name, blob in networks.items():
        if not blob[:1] == b"\x08":  # an ONNX ModelProto starts with its ir_version field
            raise EngineError(f"{path}: network {name} is not an ONNX model")
        if _has_external_data(blob):
            raise EngineError(f"{path}: network {name} refers to external data files; ra-sdk engines are self-contained")


def _has_external_data(blob: bytes) -> bool:
    """True when an ONNX model's tensors keep their data outside the file (TensorProto
    data_location = EXTERNAL, or an external_data entry): looked for with onnx when it is
    installed, else by the field's key names, which a self-contained model never holds."""
    try:
        import onnx
    except ImportError:
        return b"\n\x08location" in blob  # StringStringEntryProto key "location"
    try:
        model = onnx.load_from_string(blob)  # bytes: external data is never loaded
    except Exception:
        return False
    from onnx.external_data_helper import uses_external_data

    graphs = [model.graph]
    while graphs:
        g = graphs.pop()
        if any(uses_external_data(t) for t in g.initializer):
            return True
        for node in g.node:
            for attr in node.attribute:
                if attr.t is not None and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                    return True
                graphs.extend(attr.graphs)
                if attr.HasField("g"):
                    graphs.append(attr.g)
    return False
