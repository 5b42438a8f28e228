"""How the INT8 networks are made, by measurement: the calibration method, then which
layers stay float (per-layer sensitivity, and the export's float-edge candidates), judged on
the validation split by the product's scores (never the test split), with the speed of each
choice.

    python -m benchmarks.bench_int8 [--out benchmarks/results/int8_choice_cpu.json] [--quick]

Sensitivity of a layer = how much the image scores move back toward fp32 when only that
layer is left out of the QDQ quantization (all others int8): the relative RMS of int8 -
fp32 scores, full int8 minus leave-one-out. On ONNX Runtime a layer left out between int8
neighbours does not run float: ONNX Runtime quantizes its weights itself, per tensor, when
it loads the graph (see ``ort_as_written``), so for a middle layer this compares per-tensor
with per-channel weights. Groups: whole parts of the network left out (every node, so
their activations stay float too: these do run float), and only the stem in int8. Pool
rewrite: the features network's int8 speed with ONNX Runtime's int8 AveragePool vs the
equal depthwise convolution that export uses. Breakdown: engine + score split into recon,
features (three passes per image) and the rest of the score, fp32 and full int8, with the
int8 / fp32 ratios that full int8 would reach. Edges: the export's candidates (float
stems, the reconstruction's output head, its first layers), each with its fidelity as
ONNX Runtime runs it and as the graph is written, and its engine + score speed. Overlap:
the bundled engine's engine + score at batch 32, fp32 and int8, scored in the calling
thread alone and as the Scorer's CPU pipeline (host steps on a side thread beside the
networks) with chunks of 32, 16, 8 and 4 images; every variant's scores must equal the
sequential ones bit for bit. Resize rewrite: the reconstruction's int8 upsampling as
quantize_static writes it and as the export rewrites it (the same outputs bit for bit), with
engine + score, network and upsampling-kernel times.

    python -m benchmarks.bench_int8 --only noise|breakdown|edges|profile|head|overlap|resize   # one section, updated in --out
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from functools import partial
from pathlib import Path

import numpy as np


def main() -> None:
    from ra_sdk.export.onnx_export import int8_calibration
    from ra_sdk.export.quantize import (
        METHODS,
        add_int8,
        fidelity,
        graph_nodes,
        quantizable_layers,
        rel_rms,
        scores,
        without_int8,
    )

    from ra_sdk.bench import timeit
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.engine import read_engine
    from ra_sdk.evaluation import synthetic_suite
    from ra_sdk.scorer import Scorer

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/int8_choice_cpu.json")
    ap.add_argument("--calib-images", type=int, default=512)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["noise", "breakdown", "edges", "profile", "head", "overlap", "resize"], help="run one section and update it in --out")
    args = ap.parse_args()
    eng = without_int8(read_engine(DEMO_ENGINE))  # the fp32 networks: every candidate is made from them
    calib, calib_desc = int8_calibration(eng.meta.preset, "embedded", None, 64 if args.quick else args.calib_images)  # the export's images
    suite = synthetic_suite(16 if args.quick else 96, 2 if args.quick else 12, split="val", seed=5)
    probe = np.concatenate([suite.normals, *[imgs for imgs, _ in suite.sets.values()]])
    anomalous = np.r_[np.zeros(len(suite.normals), bool), np.ones(len(probe) - len(suite.normals), bool)]
    x32 = normal_batch("test", 32, start=9000)

    def speed(e, precision):
        with Scorer(e, backend="onnxruntime", device="cpu", precision=precision) as sc:
            return 32 / timeit(lambda: sc.score_batch(x32), warmup=1, repeat=3 if args.quick else 7)["median_s"]

    ref = scores(eng, probe, "fp32")  # every candidate keeps the fp32 networks: scored once
    if args.only:
        res = json.loads(Path(args.out).read_text())
        if args.only == "noise":
            res["score_noise"] = score_noise(eng, probe, ref)
        elif args.only == "edges":
            res["edges"] = edges(eng, calib, probe, anomalous, ref, x32, 3 if args.quick else 9)
        elif args.only == "profile":
            res["profile"] = profile(read_engine(DEMO_ENGINE), x32)
        elif args.only == "head":
            res["head_rewrite"] = head_rewrite(calib, x32, 3 if args.quick else 9)
        elif args.only == "overlap":
            res["overlap"] = overlap(read_engine(DEMO_ENGINE), x32, 5 if args.quick else 21)
        elif args.only == "resize":
            res["resize_rewrite"] = resize_rewrite(eng, calib, x32, 3 if args.quick else 9)
        else:
            res["breakdown"] = breakdown(eng, calib, x32, 3 if args.quick else 9)
        res["choice"] = choice(res)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
        print(f"updated {args.only} in {args.out}")
        return
    res: dict = {"engine": DEMO_ENGINE.name, "calib": calib_desc, "probe": f"{len(probe)} validation images ({len(suite.normals)} normals)", "methods": {}}
    fp32_ips = speed(eng, "fp32")
    for method in ("minmax",) if args.quick else METHODS:
        e8 = add_int8(eng, calib, method=method)
        f = fidelity(e8, probe, anomalous, reference=ref)
        f["images_per_s"], f["fp32_images_per_s"] = speed(e8, "int8"), fp32_ips
        res["methods"][method] = f
        print(method, json.dumps(f), flush=True)
    best = max(res["methods"], key=lambda m: res["methods"][m]["spearman"])
    res["method"] = best

    # which networks: full int8, or one network int8 and the other fp32
    for nets in (("recon",), ("features",)):
        e8 = add_int8(eng, calib, method=best, networks=nets)
        f = fidelity(e8, probe, anomalous, reference=ref)
        f["images_per_s"] = speed(e8, "int8")
        res.setdefault("networks", {})["+".join(nets)] = f
        print("int8 only", nets, json.dumps(f), flush=True)

    def int8_rel_rms(e) -> float:
        return rel_rms(scores(e, probe, "int8"), ref)

    # per-layer sensitivity of the recon network (the sensitive one): leave one layer out of
    # the quantization (float as written; ONNX Runtime gives a middle layer per-tensor weights)
    layers = quantizable_layers(eng.network("recon")[1])
    full = int8_rel_rms(add_int8(eng, calib, method=best, networks=("recon",)))
    sens = []
    for name in layers[: 4 if args.quick else None]:
        err = int8_rel_rms(add_int8(eng, calib, method=best, networks=("recon",), float_layers=[name]))
        sens.append({"layer": name, "score_rel_rms_if_float": err, "gain": full - err})
        print(f"{name:<60} {err:.5f} (gain {full - err:+.5f})", flush=True)
    sens.sort(key=lambda r: -r["gain"])
    res["sensitivity"] = {"network": "recon", "score_rel_rms_all_int8": full, "layers": sens}

    # where the recon error comes from: whole parts left float (every node of the part, not
    # only its Conv/Gemm: activations stay float too), and only the stem in int8
    nodes = [n for n, _ in graph_nodes(eng.network("recon")[1])]
    stem = {"/encoder/stem/stem.0/Conv", "/encoder/stem/stem.2/LeakyRelu"}
    groups = {
        "encoder float": [n for n in nodes if n.startswith("/encoder")],
        "decoder float": [n for n in nodes if n.startswith("/decoder")],
        "last conv float": [n for n in nodes if n.startswith("/decoder/body/body.11/")],
        "only the stem int8": [n for n in nodes if n not in stem],
    }
    res["groups"] = {"network": "recon", "score_rel_rms_all_int8": full}
    for name, float_nodes in groups.items():
        e8 = add_int8(eng, calib, method=best, networks=("recon",), float_layers=float_nodes)
        f = fidelity(e8, probe, anomalous, reference=ref)
        f["float_nodes"] = len(float_nodes)
        res["groups"][name] = f
        print(f"{name:<20} Spearman {f['spearman']:.5f} flags {f['flags_identical']:.4f} rel rms {f['score_rel_rms']:.5f}", flush=True)

    # the AveragePool rewrite: ONNX Runtime's int8 AveragePool (QLinearAveragePool) vs the
    # equal depthwise QLinearConv; both engines timed in interleaved rounds (engine + score,
    # and the features network alone)
    pair = {key: add_int8(eng, calib, method=best, networks=("features",), depthwise_pools=dw) for key, dw in (("average_pool", False), ("depthwise_conv", True))}
    ms = interleaved({k: Scorer(e, backend="onnxruntime", device="cpu", precision="int8") for k, e in pair.items()}, x32, 3 if args.quick else 9)
    res["pool_rewrite"] = {"rounds": 3 if args.quick else 9, "batch": len(x32)}
    for k, e in pair.items():
        res["pool_rewrite"][k] = {"engine_score_images_per_s": 1e3 / ms[k]["engine_score"], "features_images_per_s": 1e3 / ms[k]["features"],
                                  "spearman": fidelity(e, probe, anomalous, reference=ref)["spearman"]}
    print("pool rewrite", json.dumps(res["pool_rewrite"]), flush=True)
    res["score_noise"] = score_noise(eng, probe, ref)
    res["breakdown"] = breakdown(eng, calib, x32, 3 if args.quick else 9)
    res["edges"] = edges(eng, calib, probe, anomalous, ref, x32, 3 if args.quick else 9)
    res["profile"] = profile(read_engine(DEMO_ENGINE), x32)
    res["head_rewrite"] = head_rewrite(calib, x32, 3 if args.quick else 9)
    res["resize_rewrite"] = resize_rewrite(eng, calib, x32, 3 if args.quick else 9)
    res["overlap"] = overlap(read_engine(DEMO_ENGINE), x32, 5 if args.quick else 21)
    res["choice"] = choice(res)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"choice {res['choice']}; wrote {args.out}")


def choice(res: dict) -> dict:
    """What the export keeps, in its order (INT8_CANDIDATES): the first candidate of the
    edges section that passes (both networks), else features alone, else recon alone."""
    from ra_sdk.export.onnx_export import INT8_CANDIDATES, candidate_name

    order = [candidate_name(*c) for c in INT8_CANDIDATES]
    measured = {**res.get("edges", {}).get("candidates", {}), **res.get("networks", {})}
    kept = next((name for name in order if measured.get(name, {}).get("passed")), None)
    return {"method": res.get("method"), "candidate": kept, "fidelity": {k: measured[kept][k] for k in ("spearman", "flags_identical", "auroc_change")} if kept else None}


def interleaved(scorers: dict, x32: np.ndarray, rounds: int) -> dict:
    """Median ms per image of engine + score, of the recon network and of one features pass,
    for each scorer, timed in interleaved rounds (``ra_sdk.bench.interleaved_rounds``: the
    machine's drift hits all alike); closes the scorers."""
    from ra_sdk.bench import interleaved_rounds

    x_ph = next(iter(scorers.values())).recon.infer({"x": x32[:, None]})["x_ph"]
    fns = {}
    for k, sc in scorers.items():
        fns[(k, "engine_score")] = partial(sc.score_batch, x32)
        fns[(k, "recon")] = partial(sc.recon.infer, {"x": x32[:, None]})
        fns[(k, "features")] = partial(sc.features.infer, {"x": x_ph})
    t = interleaved_rounds(fns, rounds)
    for sc in scorers.values():
        sc.close()
    out: dict = {k: {} for k in scorers}
    for (k, part), v in t.items():
        out[k][part] = 1e3 * float(np.median(v)) / len(x32)
    return out


def overlap(eng, x32: np.ndarray, rounds: int) -> dict:
    """Engine + score at batch 32 (ms per image, median of interleaved rounds), fp32 and
    int8: in the calling thread alone ("sequential", ``pipeline_chunk`` 0) and as the
    Scorer's CPU pipeline with chunks of 32, 16, 8 and 4 images. Asserts that every variant
    gives the sequential scores bit for bit."""
    from ra_sdk.bench import interleaved_rounds
    from ra_sdk.scorer import PIPELINE_CHUNK, Scorer

    chunks = (0, 32, 16, 8, 4)
    scorers = {p: Scorer(eng, backend="onnxruntime", device="cpu", precision=p) for p in ("fp32", "int8")}
    ref = {}
    for p, sc in scorers.items():
        sc.pipeline_chunk = 0
        ref[p] = sc.score_batch(x32)[1]
        for c in chunks:
            sc.pipeline_chunk = c
            assert np.array_equal(sc.score_batch(x32)[1], ref[p]), (p, c)

    def variant(c: int, sc):
        def run() -> None:
            sc.pipeline_chunk = c
            sc.score_batch(x32)

        return run

    t = interleaved_rounds({(c, p): variant(c, sc) for c in chunks for p, sc in scorers.items()}, rounds, warmup=0)
    for sc in scorers.values():
        sc.close()
    out: dict = {"batch": len(x32), "rounds": rounds, "unit": "ms per image", "default_chunk": PIPELINE_CHUNK, "same_scores": True}
    for c in chunks:
        f32, i8 = (1e3 * float(np.median(t[(c, p)])) / len(x32) for p in ("fp32", "int8"))
        pairs = np.array(t[(c, "fp32")]) / np.array(t[(c, "int8")])
        out["sequential" if c == 0 else f"chunk{c}"] = {"fp32": f32, "int8": i8, "int8_over_fp32": f32 / i8, "int8_over_fp32_pairwise_median": float(np.median(pairs))}
    print("overlap", json.dumps(out), flush=True)
    return out


def breakdown(eng, calib: np.ndarray, x32: np.ndarray, rounds: int) -> dict:
    """Where the time of engine + score goes at batch 32, fp32 and full int8 (interleaved
    rounds, ms per image): the recon network, the features network (run three times per
    image: on x_ph, C(x) and C(x_ph); x's features come with recon), and the rest of the
    score (what of it the CPU pipeline does not hide behind the networks). Then the bound
    on int8 / fp32 for engine + score if recon passed in int8 too."""
    from ra_sdk.export.quantize import add_int8

    from ra_sdk.scorer import Scorer

    full = add_int8(eng, calib)
    out: dict = {"batch": len(x32), "rounds": rounds, "unit": "ms per image"}
    out |= interleaved({p: Scorer(full, backend="onnxruntime", device="cpu", precision=p) for p in ("fp32", "int8")}, x32, rounds)
    for p in ("fp32", "int8"):
        m = out[p]
        m["rest_of_score"] = m["engine_score"] - m["recon"] - 3 * m["features"]
    f32, i8 = out["fp32"], out["int8"]
    out["int8_over_fp32_full_int8"] = f32["engine_score"] / i8["engine_score"]
    out["int8_over_fp32_networks_only"] = (f32["recon"] + 3 * f32["features"]) / (i8["recon"] + 3 * i8["features"])
    print("breakdown", json.dumps(out), flush=True)
    return out


def edges(eng, calib: np.ndarray, probe: np.ndarray, anomalous: np.ndarray, ref: np.ndarray, x32: np.ndarray, rounds: int) -> dict:
    """The export's int8 candidates (export.onnx_export.INT8_CANDIDATES) that quantize both
    networks: every layer int8 but those that read one channel (the stems, float for speed,
    through their first pool where the candidate says so), then the reconstruction's float
    edges (its output head, then also its first 1, 2 layers deep; 3 deep beyond the
    candidates); and, for the speed of the stems, every layer int8. Each with its fidelity
    on the validation probe and its engine + score speed, timed in interleaved rounds with
    fp32 (ms per image, batch 32)."""
    from ra_sdk.export.onnx_export import BOTH, INT8_CANDIDATES, candidate_name, int8_float_layers
    from ra_sdk.export.quantize import add_int8, fidelity

    from ra_sdk.scorer import Scorer

    nets = BOTH
    cache: dict = {}
    out: dict = {"rounds": rounds, "batch": len(x32), "candidates": {}}
    engines = {}
    variants = [("every layer int8, the stems too", {})]
    variants += [(candidate_name(*c), int8_float_layers(eng, *c)) for c in INT8_CANDIDATES if c[0] == nets]
    variants += [(candidate_name(nets, 3) + " (beyond the export's candidates)", int8_float_layers(eng, nets, 3))]
    for name, fl in variants:
        e8 = add_int8(eng, calib, networks=nets, float_layers=fl, cache=cache)
        f = fidelity(e8, probe, anomalous, reference=ref)
        f["float_layers"] = fl
        with ort_as_written():
            w = fidelity(e8, probe, anomalous, reference=ref)
        f["as_written"] = {k: w[k] for k in ("spearman", "flags_identical", "score_rel_rms", "passed")}
        out["candidates"][name] = f
        engines[name] = e8
        print(f"{name:<70} Spearman {f['spearman']:.5f} flags {f['flags_identical']:.4f} passed {f['passed']} (as written: {w['spearman']:.5f})", flush=True)
    ms = interleaved({"fp32": Scorer(eng, backend="onnxruntime", device="cpu", precision="fp32")}
                     | {k: Scorer(e, backend="onnxruntime", device="cpu", precision="int8") for k, e in engines.items()}, x32, rounds)
    out["fp32_ms_per_image"] = ms["fp32"]
    for k in engines:
        out["candidates"][k]["ms_per_image"] = ms[k]
        out["candidates"][k]["engine_score_int8_over_fp32"] = ms["fp32"]["engine_score"] / ms[k]["engine_score"]
        print(f"{k:<70} engine + score {1e3 / ms[k]['engine_score']:.1f} images/s, {out['candidates'][k]['engine_score_int8_over_fp32']:.2f}x fp32", flush=True)
    return out


def resize_rewrite(eng, calib: np.ndarray, x32: np.ndarray, rounds: int) -> dict:
    """The reconstruction's 2x nearest upsampling in the int8 graph as quantize_static writes
    it (DequantizeLinear, Resize, QuantizeLinear: ONNX Runtime runs a channels-last uint8
    Resize) and as the export writes it (``resizes_as_expand``: a uint8 Expand between
    Transposes that cancel): the shipped candidate's float layers, the same calibration;
    the two must give the same outputs bit for bit. Ms per image of engine + score, of the
    recon network alone and of one features pass (interleaved rounds, batch 32), and the
    kernel time of the upsampling operators from ONNX Runtime's profiler."""
    from ra_sdk.export.onnx_export import int8_float_layers
    from ra_sdk.export.quantize import add_int8

    from ra_sdk.scorer import Scorer

    fl = int8_float_layers(eng, ("recon",), 2, ("recon",))
    pair = {key: add_int8(eng, calib, networks=("recon",), float_layers=fl, expand_resizes=on) for key, on in (("resize", False), ("expand", True))}
    scorers = {k: Scorer(e, backend="onnxruntime", device="cpu", precision="int8") for k, e in pair.items()}
    outs = {k: sc.recon.infer({"x": x32[:, None]}) for k, sc in scorers.items()}
    same = all(np.array_equal(outs["resize"][k], outs["expand"][k]) for k in outs["resize"])
    assert same, "the upsampling rewrite changed the reconstruction's int8 outputs"
    out: dict = {"batch": len(x32), "rounds": rounds, "unit": "ms per image", "same_outputs": same}
    out |= interleaved(scorers, x32, rounds)  # closes them
    for k, e in pair.items():
        by_op = profile_network(e.network("recon_int8")[1], x32)
        out[k]["upsampling_kernel_ms"] = sum(by_op.get(op, 0.0) for op in ("Resize", "Expand", "Reshape"))
    print("resize rewrite", json.dumps(out), flush=True)
    return out


def profile_network(blob: bytes, x32: np.ndarray, runs: int = 5) -> dict:
    """Kernel ms per image of each operator type of one network (ONNX Runtime's profiler,
    batch 32, as the runner sets the session)."""
    import collections

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tmp) / "net")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            sess.run(None, {"x": x32[:, None]})
        events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"].get("op_name", "?")] += e["dur"] / 1e3 / runs / len(x32)
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def head_rewrite(calib: np.ndarray, x32: np.ndarray, rounds: int) -> dict:
    """The reconstruction exported with its 16 -> 1 output convolution as is and as the
    export writes it (depthwise + 1x1 channel sum, ``one_channel_convs_as_depthwise``):
    ms per image of the network alone at batch 32, fp32 and int8 (the shipped candidate's
    left-out layers), interleaved rounds, and the largest output difference in fp32."""
    import onnxruntime as ort
    from ra_sdk.export.onnx_export import to_onnx
    from ra_sdk.export.quantize import float_edges, quantize
    from ra_sdk.train import load_model

    from ra_sdk.bench import interleaved_rounds
    from ra_sdk.data import DEMO_ENGINE

    net, _ = load_model(DEMO_ENGINE)
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions, outs = {}, {}
    for key, rewrite in (("as_is", False), ("rewritten", True)):
        blob = to_onnx(net, "recon", one_channel_rewrite=rewrite)
        q = quantize(blob, calib, float_layers=float_edges(blob, depth=2, tail=["x_ph"], one_channel=True))
        for precision, b in (("fp32", blob), ("int8", q)):
            sessions[f"{key} {precision}"] = ort.InferenceSession(b, opts, providers=["CPUExecutionProvider"])
        outs[key] = sessions[f"{key} fp32"].run(None, {"x": x32[:, None]})
    t = interleaved_rounds({k: partial(s.run, None, {"x": x32[:, None]}) for k, s in sessions.items()}, rounds)
    out: dict = {"batch": len(x32), "rounds": rounds, "ms_per_image": {k: 1e3 * float(np.median(v)) / len(x32) for k, v in t.items()},
                 "max_abs_diff_fp32": float(max(np.abs(a - b).max() for a, b in zip(outs["as_is"], outs["rewritten"])))}
    print("head rewrite", json.dumps(out), flush=True)
    return out


def profile(eng, x32: np.ndarray, runs: int = 5) -> dict:
    """Where each network of the bundled engine spends its time, by ONNX Runtime's own
    profiler (kernel time per operator type, batch 32, 2 threads, as the runner sets them):
    why the int8 networks stay far from the int8 roof."""
    out: dict = {"batch": len(x32), "runs": runs, "unit": "share of kernel time"}
    for name in eng.meta.networks:
        by_op = profile_network(eng.network(name)[1], x32, runs)
        total = sum(by_op.values())
        out[name] = {"ms_per_image": total, "by_op": {k: v / total for k, v in by_op.items()}}
        print(name, f"{total:.2f} ms/image", ", ".join(f"{k} {v:.0%}" for k, v in list(out[name]["by_op"].items())[:6]), flush=True)
    return out


@contextlib.contextmanager
def ort_as_written():
    """ONNX Runtime sessions without its WeightBiasQuantization transformer, so that a layer
    left out of the QDQ quantization runs float as the graph says. By default ONNX Runtime
    quantizes such a layer itself when it loads the graph (weights int8 per tensor) wherever
    its input and output are int8 anyway: only layers at the edges of the int8 part (the
    stem, which reads the float input; the output head, whose output stays float) run float."""
    import onnxruntime as ort

    original = ort.InferenceSession

    def session(*a, **k):
        k["disabled_optimizers"] = [*k.get("disabled_optimizers", []), "WeightBiasQuantization"]
        return original(*a, **k)

    ort.InferenceSession = session
    try:
        yield
    finally:
        ort.InferenceSession = original


def score_noise(eng, probe: np.ndarray, ref: np.ndarray, sigmas: tuple[float, ...] = (0.1, 1.0, 4.0)) -> dict:
    """The yardstick for the int8 figures: how far the fp32 scores move when only white
    Gaussian noise of sigma/255 is added to the reconstruction (the score reads it through
    CLAHE's 256-bin histograms, a step function of the pixel values). ``ref``: the fp32 scores."""
    from ra_sdk.export.quantize import rel_rms

    from ra_sdk import metrics
    from ra_sdk.scorer import Scorer

    out: dict = {"what": "fp32 scores with N(0, sigma/255) added to x_ph, against fp32", "images": len(probe)}
    rng = np.random.default_rng(0)
    with Scorer(eng, backend="onnxruntime", device="cpu", precision="fp32") as sc:
        infer = sc.recon.infer
        for sigma in sigmas:

            def noisy(inputs, sigma=sigma):
                res = dict(infer(inputs))
                res["x_ph"] = np.clip(res["x_ph"] + rng.normal(0, sigma / 255, res["x_ph"].shape).astype(np.float32), 0, 1)
                return res

            sc.recon.infer = noisy  # type: ignore[method-assign]
            s = sc.score(probe, maps=False, recons=False)[1]
            out[f"sigma_{sigma:g}"] = {"spearman": metrics.spearman(ref, s), "score_rel_rms": rel_rms(s, ref)}
            print(f"x_ph + N(0, {sigma:g}/255): {out[f'sigma_{sigma:g}']}", flush=True)
    return out


if __name__ == "__main__":
    main()
