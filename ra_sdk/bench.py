"""``ra-sdk bench``: the standard speed suite, one method (warm-up, repeats, median and
spread, device sync inside the timed region), JSON out.

- latency (p50, p99) at batch 1 and throughput over batch sizes, engine + score, for every
  runner and precision usable here;
- end-to-end ``ra-sdk screen`` on the demo studies;
- the baseline users would otherwise run: the research pipeline written the way the
  official RA evaluator works (PyTorch eager, one image at a time, scikit-image CLAHE per
  image, scipy Gaussian, the same model and perceptual network), timed in the same run
  on the same images (needs the ``train`` and ``dev`` extras; skipped with a note otherwise).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import metrics
from ._optional import is_installed
from ._version import __version__
from .info import platform_name

log = logging.getLogger(__name__)

K = TypeVar("K")


def timeit(fn: Callable[[], Any], *, warmup: int = 2, repeat: int = 10, sync: Callable[[], Any] | None = None) -> dict[str, float]:
    """Median, p10/p90/p99, min, max of ``repeat`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    ts = []
    for _ in range(repeat):
        if sync:
            sync()
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t)
    a = np.asarray(ts)
    return {
        "median_s": float(np.median(a)), "p10_s": float(np.percentile(a, 10)), "p90_s": float(np.percentile(a, 90)),
        "p99_s": float(np.percentile(a, 99)), "min_s": float(a.min()), "max_s": float(a.max()), "n": int(a.size),
    }


def gemm_peak_gmacs(n: int = 1024) -> dict[str, float] | None:
    """The attainable peak of this machine's ONNX Runtime: multiply-adds per second of one
    large matrix product, fp32 (MatMul) and int8 (MatMulInteger, uint8 x int8), the best of
    n = 512, 1024, 2048, each timed by its fastest of 5 runs (a roof is what the machine does
    at best; a median let this shared machine's slow moments lower it below what the
    networks reached). None without the onnx package (the train extra)."""
    if not is_installed("onnx"):
        return None
    from onnx import TensorProto, helper

    from ._optional import import_onnxruntime

    ort = import_onnxruntime()
    out = {}
    for kind, (ta, tb, ty, op) in {"fp32": (TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"), "int8": (TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, "MatMulInteger")}.items():
        best = 0.0
        for m in (512, 1024, 2048):
            g = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "gemm", [helper.make_tensor_value_info("a", ta, [m, m]), helper.make_tensor_value_info("b", tb, [m, m])],
                                  [helper.make_tensor_value_info("y", ty, [m, m])])
            sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(), providers=["CPUExecutionProvider"])
            rng = np.random.default_rng(0)
            a = rng.random((m, m)).astype(np.float32) if kind == "fp32" else rng.integers(0, 255, (m, m), dtype=np.uint8)
            b = rng.random((m, m)).astype(np.float32) if kind == "fp32" else rng.integers(-127, 127, (m, m), dtype=np.int8)
            t = timeit(lambda: sess.run(None, {"a": a, "b": b}), warmup=1, repeat=5)
            best = max(best, m**3 / t["min_s"] / 1e9)
        out[kind] = best
    out["fp16"] = out["fp32"]
    return out


def machine() -> dict[str, Any]:
    import importlib.metadata as md
    import subprocess

    info: dict[str, Any] = {"platform": platform_name(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
                            "ra_sdk": __version__, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        # figures measured on uncommitted changes say so (results and the README rendered
        # from them are outputs of the benchmarks, not changes to what is measured)
        changed = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results", ":!README.md"]
        if subprocess.run(changed, capture_output=True, text=True, check=True).stdout.strip():
            info["commit"] += "+changes"
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    for d in ("numpy", "onnxruntime", "torch", "opencv-python-headless", "scikit-image", "scipy", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            info[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return info


def reference_pipeline(net: Any, config: Any) -> Callable[[np.ndarray], float]:
    """The research pipeline for one image, as the official RA evaluator runs it: PyTorch
    eager forward (z = mu), scikit-image CLAHE of x and x_ph, the perceptual maps with the
    same network (the model's encoder features, or 1 - skimage SSIM), scipy Gaussians,
    residual times saliency, the foreground mask and the same image-score aggregation.
    Returns the score (tests/test_scoring.py holds it to the product's score)."""
    import torch
    from scipy.ndimage import gaussian_filter
    from skimage.exposure import equalize_adapthist
    from skimage.metrics import structural_similarity

    def unit(t: Any) -> Any:
        return t / (torch.sqrt((t**2).sum(1, keepdim=True)) + 1e-10)

    def perceptual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if config.perceptual == "structural":
            return 1 - structural_similarity(a, b, data_range=1, full=True)[1]
        with torch.no_grad():
            fa = net.embed(torch.from_numpy(a)[None, None])
            fb = net.embed(torch.from_numpy(b)[None, None])
            total = torch.zeros(1, 1, *a.shape)
            for ea, eb in zip(fa, fb):
                d = ((unit(ea) - unit(eb)) ** 2).sum(1, keepdim=True)
                total = total + torch.nn.functional.interpolate(d, size=a.shape, mode="bilinear", align_corners=False)
        return total[0, 0].numpy()

    def run(x: np.ndarray) -> float:
        with torch.no_grad():
            x_ph = net.reconstruct(torch.from_numpy(x)[None, None])[0][0, 0].numpy()
        x_ph = np.clip(x_ph, 0, 1)
        cx = equalize_adapthist(x).astype(np.float32)
        cp = equalize_adapthist(x_ph).astype(np.float32)
        s = gaussian_filter(perceptual(x_ph, x), 2.0) * gaussian_filter(perceptual(cp, cx), 2.0)
        amap = np.abs(cp - cx) * s
        vals = amap.ravel()
        if config.foreground > 0:  # only where the smoothed input is above the level
            fg = gaussian_filter(x, 2.0) > config.foreground
            if config.aggregation == "mean":
                return float(amap[fg].mean()) if fg.any() else 0.0
            vals = np.where(fg, amap, 0).ravel()  # top-k and max: the outside counts as zero
        if config.aggregation == "mean":
            return float(vals.mean())
        if config.aggregation == "max":
            return float(vals.max())
        k = max(1, round(config.topk * amap.size))
        return float(np.sort(vals)[::-1][:k].mean())

    return run


def run_suite(*, engine: str | Path | None = None, batches: tuple[int, ...] = (1, 8, 32, 64),
              n_studies: int = 60, baseline_images: int = 48, quick: bool = False) -> dict[str, Any]:
    """The standard suite; returns the JSON-ready result."""
    from .data import DEMO_ENGINE
    from .data.augment import normal_batch
    from .data.demo_studies import DemoSpec, write_demo_studies
    from .engine import read_engine
    from .evaluation import load_labelled_studies
    from .run import run
    from .runners import list_backends
    from .scorer import Scorer
    from .screen import Screener

    eng = read_engine(engine or DEMO_ENGINE)
    res: dict[str, Any] = {"suite": "speed", "machine": machine(), "engine": str(engine or DEMO_ENGINE.name), "runners": {}, "notes": []}
    images = normal_batch("test", max(batches) * 2, start=7000)
    sync = None
    combos = [("onnxruntime", "cpu", "fp32")]
    if any(k.endswith("_fp16") for k in eng.meta.networks):
        combos.append(("onnxruntime", "cpu", "fp16"))
    has_int8 = any(k.endswith("_int8") for k in eng.meta.networks)
    if has_int8:
        combos.append(("onnxruntime", "cpu", "int8"))
    torch_ok = is_installed("torch") and ("model.safetensors" in eng.members or is_installed("onnx"))
    if torch_ok:
        combos.append(("torch", "cpu", "fp32"))
    from .info import cuda_driver

    if cuda_driver()[0] and is_installed("cupy") and torch_ok:
        import cupy

        sync = cupy.cuda.Device().synchronize
        combos += [("torch", "cuda", "fp32"), ("torch", "cuda", "fp16")]
    res["backends_known"] = list_backends()
    from .configs import macs_per_image
    from .info import cpu_peak_gmacs

    passes = 3 if eng.meta.score.perceptual == "features" else 0  # E(x_ph), E(C(x_ph)), E(C(x)); E(x) comes with recon
    macs = macs_per_image(eng.meta.model, "recon") + passes * macs_per_image(eng.meta.model, "features")
    nominal = cpu_peak_gmacs()
    gemm = gemm_peak_gmacs()
    peak = gemm or nominal  # the attainable roof when it can be measured, else the nominal one
    res["limit"] = {"macs_per_image": macs, "recon_macs": macs_per_image(eng.meta.model, "recon"), "features_macs": macs_per_image(eng.meta.model, "features"),
                    "feature_passes": passes, "cpu_peak_gmacs": nominal, "gemm_peak_gmacs": gemm, "peak_used": "measured GEMM" if gemm else "nominal"}
    for backend, device, prec in combos:
        key = f"{backend}-{device}-{prec}"
        with Scorer(eng, backend=backend, device=device, precision=prec, batch_size=max(batches)) as sc:
            row: dict[str, Any] = {}
            for b in batches:
                x = images[:b] if device == "cpu" else __import__("cupy").asarray(images[:b])
                t = timeit(lambda: sc.score_batch(x), warmup=1 if quick else 2, repeat=(5 if quick else 20) if b == 1 else (2 if quick else 5), sync=sync if device == "cuda" else None)
                row[f"b{b}"] = {**t, "images_per_s": b / t["median_s"]}
                if device == "cpu":  # the networks alone, and how far they are from the hardware
                    feats = sc.features
                    x4 = x[:, None]

                    def nets() -> None:
                        sc.recon.infer({"x": x4})
                        for _ in range(passes):
                            assert feats is not None
                            feats.infer({"x": x4})

                    tn = timeit(nets, warmup=1, repeat=3 if quick else 5)
                    gmacs = macs * b / tn["median_s"] / 1e9
                    # the peak of this mix: each network at the peak of the precision it runs in
                    spent = res["limit"]["recon_macs"] / peak[sc.recon.spec.precision] + (passes * res["limit"]["features_macs"] / peak[feats.spec.precision] if feats else 0.0)
                    row[f"b{b}"].update({"network_images_per_s": b / tn["median_s"], "network_gmacs_per_s": gmacs, "peak_gmacs_of_mix": macs / spent,
                                         "pct_of_peak": 100 * gmacs / (macs / spent), "networks": {"recon": sc.recon.spec.precision, "features": feats.spec.precision if feats else None}})
            res["runners"][key] = row
            log.info("%s: %s", key, {k: round(v["images_per_s"], 1) for k, v in row.items()})
    if has_int8 and 32 in batches:
        res["engine_score_int8_vs_fp32"] = interleaved_ratio(eng, images[:32], 3 if quick else 15)
    # End-to-end screening of the demo studies, and the research pipeline on the same images.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        write_demo_studies(root, DemoSpec(n_normal=n_studies, n_per_type=max(1, n_studies // 10), n_volumes=2))
        screeners = {p: Screener(eng, backend="onnxruntime", device="cpu", precision=p) for p in (("fp32", "int8") if has_int8 else ("fp32",))}
        ref = None
        if torch_ok and is_installed("skimage") and is_installed("scipy"):
            import torch

            from .network import load_engine_network

            net = load_engine_network(eng)
            torch.set_num_threads(os.cpu_count() or 1)
            imgs, _, _ = load_labelled_studies(root, eng.meta.preset)
            imgs = imgs[:baseline_images]
            ref = reference_pipeline(net, eng.meta.score)
            ref(imgs[0])  # warm-up
        else:
            res["notes"].append("research baseline skipped: needs the train + dev extras (torch, onnx, scikit-image, scipy)")
        # ra-sdk screen (each precision) and the research pipeline alternate, round by round,
        # so that drift of the machine's speed hits every side alike; ratios are medians over rounds.
        runs: dict[str, list[float]] = {p: [] for p in screeners}
        ref_runs: list[float] = []
        for i in range(2 if quick else 3):
            for p, scr in screeners.items():
                summary, _ = run(root / "studies", Path(tmp) / f"out-{p}-{i}", scr, resume=False)
                runs[p].append(summary.images_per_s)
            if ref is not None:
                t0 = time.perf_counter()
                ref_scores = [ref(im) for im in imgs]
                ref_runs.append(len(imgs) / (time.perf_counter() - t0))
        best = "int8" if has_int8 else "fp32"
        res["screen_demo"] = {"images_per_s_runs": runs[best], "images_per_s": float(np.median(runs[best])), "precision": best, "studies": summary.studies, "images": summary.images,
                              "by_precision": {p: {"images_per_s_runs": r, "images_per_s": float(np.median(r))} for p, r in runs.items()}}
        if has_int8:
            res["screen_demo"]["int8_vs_fp32"] = float(np.median([a / b for a, b in zip(runs["int8"], runs["fp32"])]))
        if ref is not None:
            with Scorer(eng, backend="onnxruntime", device="cpu", precision=best) as sc:
                _, ours, _ = sc.score(imgs, maps=False, recons=False)
            rank = metrics.spearman(ref_scores, ours)
            pair_ratios = [a / b for a, b in zip(runs[best], ref_runs)]
            res["research_baseline"] = {
                "images": len(imgs), "images_per_s_runs": ref_runs, "images_per_s": float(np.median(ref_runs)),
                "spearman_vs_ra_sdk": float(rank),
                "pair_ratios": pair_ratios,
                "speedup_screen_vs_baseline": float(np.median(pair_ratios)),
                "speedup_range": [min(pair_ratios), max(pair_ratios)],
                "ra_sdk_precision": best,
            }
    return res


def interleaved_rounds(fns: dict[K, Callable[[], Any]], rounds: int, *, warmup: int = 1) -> dict[K, list[float]]:
    """Seconds of each function per round, the functions called in turn within each round,
    so that drift of the machine's speed hits all alike (compare them round by round). The
    order reverses every other round (A B, B A, ...), so that what one function leaves behind
    (caches, clocks, threads) favours none of them."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    t: dict[K, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys if r % 2 == 0 else keys[::-1]:
            t0 = time.perf_counter()
            fns[k]()
            t[k].append(time.perf_counter() - t0)
    return t


def interleaved_ratio(eng: Any, x: np.ndarray, rounds: int) -> dict[str, Any]:
    """Engine + score of one batch, int8 against fp32 (ONNX Runtime, CPU), in interleaved
    rounds: the medians and the median of the per-round ratios."""
    from .scorer import Scorer

    scorers = {p: Scorer(eng, backend="onnxruntime", device="cpu", precision=p, batch_size=len(x)) for p in ("fp32", "int8")}
    try:
        t = interleaved_rounds({p: partial(sc.score_batch, x) for p, sc in scorers.items()}, rounds)
    finally:
        for sc in scorers.values():
            sc.close()
    ips = {p: len(x) / float(np.median(v)) for p, v in t.items()}
    pairs = [a / b for a, b in zip(t["fp32"], t["int8"])]
    return {"batch": len(x), "rounds": rounds, "order": "alternating", "fp32_images_per_s": ips["fp32"], "int8_images_per_s": ips["int8"],
            "ratio_of_medians": ips["int8"] / ips["fp32"], "ratio_median_of_rounds": float(np.median(pairs)), "ratio_range": [min(pairs), max(pairs)]}


def format_suite(res: dict[str, Any]) -> str:
    lines = [f"{'runner':<24}{'batch':>6}{'images/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'net GMAC/s':>12}{'% peak':>8}"]
    for key, row in res["runners"].items():
        for b, v in row.items():
            net = f"{v['network_gmacs_per_s']:>12.1f}{v['pct_of_peak']:>7.1f}%" if "pct_of_peak" in v else ""
            lines.append(f"{key:<24}{b[1:]:>6}{v['images_per_s']:>11.1f}{v['median_s'] * 1e3:>9.2f}{v['p99_s'] * 1e3:>9.2f}{net}")
    if "limit" in res:
        lim = res["limit"]
        g = lim.get("gemm_peak_gmacs") or {}
        lines.append(f"\n{lim['macs_per_image'] / 1e9:.2f} GMAC per image (recon {lim['recon_macs'] / 1e9:.2f} + {lim['feature_passes']} x features {lim['features_macs'] / 1e9:.2f}); "
                     f"nominal CPU peak {lim['cpu_peak_gmacs']['fp32']:.0f} GMAC/s fp32, {lim['cpu_peak_gmacs']['int8']:.0f} int8 ({lim['cpu_peak_gmacs']['assumptions']})"
                     + (f"; measured GEMM peak {g['fp32']:.0f} fp32, {g['int8']:.0f} int8 (% of peak is against this)" if g else ""))
    if "engine_score_int8_vs_fp32" in res:
        r = res["engine_score_int8_vs_fp32"]
        lines.append(f"\nengine + score at batch {r['batch']}, {r['rounds']} interleaved rounds: int8 {r['int8_images_per_s']:.1f} vs fp32 {r['fp32_images_per_s']:.1f} images/s, "
                     f"{r['ratio_of_medians']:.2f}x (median of the rounds' ratios {r['ratio_median_of_rounds']:.2f}x, range {r['ratio_range'][0]:.2f}x..{r['ratio_range'][1]:.2f}x)")
    s = res["screen_demo"]
    for p, v in s.get("by_precision", {"": s}).items():
        lines.append(f"\nra-sdk screen {p}, demo studies: {v['images_per_s']:.1f} images/s (runs {', '.join(f'{x:.1f}' for x in v['images_per_s_runs'])})")
    if "int8_vs_fp32" in s:
        lines.append(f"end to end, int8 vs fp32: {s['int8_vs_fp32']:.2f}x (median over interleaved rounds)")
    if "research_baseline" in res:
        rb = res["research_baseline"]
        lines.append(f"research pipeline (one image at a time): {rb['images_per_s']:.1f} images/s (runs {', '.join(f'{v:.1f}' for v in rb['images_per_s_runs'])}); "
                     f"ra-sdk screen is {rb['speedup_screen_vs_baseline']:.2f}x faster (median of interleaved pairs; {rb['speedup_range'][0]:.2f}x..{rb['speedup_range'][1]:.2f}x; "
                     f"score rank correlation {rb['spearman_vs_ra_sdk']:.4f})")
    lines += res["notes"]
    return "\n".join(lines)
