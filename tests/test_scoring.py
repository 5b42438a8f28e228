"""The anomaly score against its oracles (scikit-image, scipy, torch), on every device: each
op's test runs over ``cpu_and_cuda()``, so the CUDA kernel and the CPU reference it pairs
with meet the same oracle and the same tolerance (TOL, one place); CUDA cases skip with a
reason where there is no GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from ra_sdk import scoring
from ra_sdk.errors import ConfigError
from ra_sdk.scoring import ScoreConfig

skimage = pytest.importorskip("skimage")
ndi = pytest.importorskip("scipy.ndimage")
from skimage.exposure import equalize_adapthist  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

#: CLAHE: |diff| <= 1e-4 on >= 99.9% of pixels and <= 3e-4 everywhere (~1 and ~5 of
#: skimage's 2^14 grey levels); Gaussian 1e-6; SSIM map 1e-5; full map 1e-5 of its max.
TOL = {"clahe_p999": 1e-4, "clahe_max": 3e-4, "gauss": 1e-6, "ssim": 1e-5, "map_rel": 1e-5}


def cpu_and_cuda() -> list:
    """The devices an op's test runs on (torchvision's idiom)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


def on(device: str, x):
    """x (an array or a list of arrays) on ``device``."""
    if device == "cpu":
        return x
    import cupy

    return [cupy.asarray(a) for a in x] if isinstance(x, list) else cupy.asarray(x)


def host(x) -> np.ndarray:
    """A numpy array of a result, checking it stayed an array of its device's kind."""
    return x.get() if type(x).__module__.startswith("cupy") else np.asarray(x)


def assert_clahe_close(got: np.ndarray, ref: np.ndarray) -> None:
    d = np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64))
    assert d.max() <= TOL["clahe_max"], d.max()
    assert (d <= TOL["clahe_p999"]).mean() >= 0.999, (d > TOL["clahe_p999"]).mean()


def skimage_clahe(x: np.ndarray) -> np.ndarray:
    return np.stack([equalize_adapthist(im) for im in x])


def brain_like(rng, n=6, h=128, w=128) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    out = []
    for i in range(n):
        r = ((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.35 * w)) ** 2
        img = (r < 1) * (0.6 + 0.25 * np.sin(xx / (3 + i)) * np.cos(yy / (5 + i))) + rng.normal(0, 0.02, (h, w))
        out.append(np.clip(img, 0, 1))
    return np.asarray(out, np.float32)


def clahe_cases(rng):
    yield "brain-like", brain_like(rng)
    yield "random", rng.random((5, 128, 128), dtype=np.float32)
    yield "odd-127x201", rng.random((3, 127, 201), dtype=np.float32)
    yield "uint16", rng.integers(0, 65536, (3, 64, 96)).astype(np.uint16)
    yield "uint16-narrow", rng.integers(1000, 1200, (3, 64, 64)).astype(np.uint16)
    yield "constant", np.full((2, 32, 32), 0.37, np.float32)
    yield "zeros", np.zeros((2, 16, 16), np.float32)
    yield "smaller-than-8", rng.random((3, 5, 7), dtype=np.float32)
    yield "1x1", rng.random((2, 1, 1), dtype=np.float32)
    yield "binary", (rng.random((2, 40, 40)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_clahe_matches_skimage(rng, device):
    for name, x in clahe_cases(rng):
        got = scoring.clahe(on(device, x))
        assert got.dtype == np.float32 and got.shape == x.shape, name
        assert_clahe_close(host(got), skimage_clahe(x))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_clahe_on_mni_slices(device):
    from ra_sdk.data import load_normal_slices

    x = load_normal_slices()[::7][:16]
    assert_clahe_close(host(scoring.clahe(on(device, x))), skimage_clahe(x))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_clahe_accepts_channel_axis(rng, device):
    x = rng.random((3, 1, 32, 48), dtype=np.float32)
    got = host(scoring.clahe(on(device, x)))
    assert got.shape == x.shape
    assert_clahe_close(got[:, 0], skimage_clahe(x[:, 0]))


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("shape", [(4, 128, 128), (3, 127, 201), (2, 5, 7), (2, 1, 9)])
def test_gaussian_blur_matches_scipy(rng, shape, device):
    x = rng.random(shape, dtype=np.float32)
    got = host(scoring.gaussian_blur(on(device, x), 2.0))
    ref = np.stack([ndi.gaussian_filter(im, 2.0, mode="reflect", truncate=4.0) for im in x])
    assert np.abs(got - ref).max() <= TOL["gauss"]


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("gaussian_weights", [False, True])
@pytest.mark.parametrize("shape", [(3, 128, 128), (2, 31, 45)])
def test_structural_map_matches_skimage(rng, shape, gaussian_weights, device):
    a = rng.random(shape, dtype=np.float32)
    b = np.clip(a + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
    got = host(scoring.perceptual_map(on(device, a), on(device, b), kind="structural", gaussian_weights=gaussian_weights))
    ref = np.stack([1 - structural_similarity(p, q, data_range=1, full=True, gaussian_weights=gaussian_weights)[1] for p, q in zip(a, b)])
    assert np.abs(got - ref).max() <= TOL["ssim"]


def _torch_feature_map(fa, fb, size):
    torch = pytest.importorskip("torch")

    def unit(t):
        return t / (torch.sqrt((t**2).sum(1, keepdim=True)) + 1e-10)

    total = 0
    for a, b in zip(fa, fb):
        d = ((unit(torch.from_numpy(a)) - unit(torch.from_numpy(b))) ** 2).sum(1, keepdim=True)
        total = total + torch.nn.functional.interpolate(d, size=size, mode="bilinear", align_corners=False)
    return total[:, 0].numpy()


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_feature_map_matches_torch(rng, device):
    fa = [rng.standard_normal((2, 8, 32, 32)).astype(np.float32), rng.standard_normal((2, 16, 8, 8)).astype(np.float32)]
    fb = [f + 0.5 * rng.standard_normal(f.shape).astype(np.float32) for f in fa]
    got = host(scoring.perceptual_map(on(device, fa), on(device, fb), kind="features", size=(128, 128)))
    ref = _torch_feature_map(fa, fb, (128, 128))
    assert np.abs(got - ref).max() <= 1e-5 * ref.max()


def reference_anomaly_map(x, x_ph, perceptual="structural", feats=None):
    """DESIGN.md section 3 transcribed with skimage, scipy and torch, one image at a time."""
    out = []
    for i in range(x.shape[0]):
        a, p = x[i], x_ph[i]
        ca, cp_ = equalize_adapthist(a).astype(np.float32), equalize_adapthist(p).astype(np.float32)
        if perceptual == "structural":
            p1 = 1 - structural_similarity(p, a, data_range=1, full=True)[1]
            p2 = 1 - structural_similarity(cp_, ca, data_range=1, full=True)[1]
        else:
            def fmap(u, v):
                return _torch_feature_map(feats(u[None, None]), feats(v[None, None]), a.shape)[0]
            p1, p2 = fmap(p, a), fmap(cp_, ca)
        s = ndi.gaussian_filter(p1, 2.0, mode="reflect", truncate=4.0) * ndi.gaussian_filter(p2, 2.0, mode="reflect", truncate=4.0)
        out.append(np.abs(cp_ - ca) * s)
    return np.stack(out)


def pseudo_healthy(rng, x):
    y = x.copy()
    y[:, 40:60, 50:75] = np.clip(y[:, 40:60, 50:75] + 0.3, 0, 1)  # a "lesion" the model removed
    return np.clip(y + rng.normal(0, 0.01, y.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_anomaly_map_structural_matches_transcription(rng, device):
    """On a GPU this is the fused kernel (CLAHE, SSIM, Gaussian, residual, product) and its
    per-image reductions feed the mean and max scores."""
    x = brain_like(rng, n=4)
    x_ph = pseudo_healthy(rng, x)
    got = host(scoring.anomaly_map(on(device, x), on(device, x_ph)))
    ref = reference_anomaly_map(x, x_ph)
    assert np.abs(got - ref).max() <= TOL["map_rel"] * ref.max()
    assert got[:, 40:60, 50:75].mean() > 5 * got.mean() / 2  # the map lights up where they differ
    for how in ("mean", "max", "topk"):
        maps, scores = scoring.score_batch(on(device, x), on(device, x_ph), config=ScoreConfig(aggregation=how))
        want = {"mean": ref.reshape(4, -1).mean(1), "max": ref.reshape(4, -1).max(1), "topk": np.sort(ref.reshape(4, -1), 1)[:, ::-1][:, :164].mean(1)}[how]
        assert host(maps).shape == x.shape
        np.testing.assert_allclose(host(scores), want, rtol=1e-4)


def test_anomaly_map_features_matches_transcription(rng):
    x = brain_like(rng, n=2, h=64, w=64)
    x_ph = pseudo_healthy(rng, x)
    proj = [rng.standard_normal((4, 1)).astype(np.float32), rng.standard_normal((6, 1)).astype(np.float32)]

    def feats(img):  # a fixed toy "network": two scales of projected, pooled pixels
        img = np.asarray(img, np.float32)
        l1 = np.einsum("cd,bdhw->bchw", proj[0], img)
        l2 = np.einsum("cd,bdhw->bchw", proj[1], img.reshape(img.shape[0], 1, 16, 4, 16, 4).mean((3, 5)))
        return [np.tanh(l1), np.tanh(l2)]

    got = scoring.anomaly_map(x, x_ph, feats, config=ScoreConfig(perceptual="features"))
    ref = reference_anomaly_map(x, x_ph, "features", feats)
    assert np.abs(got - ref).max() <= TOL["map_rel"] * ref.max()


@pytest.mark.parametrize("k", [1, 7, 300, 1000, 1024])
def test_topk_mean_is_the_full_sort_bit_for_bit(rng, k):
    """The selection among positives first (fast on maps with a plateau of zeros) gives the
    same bits as sorting every row, whether or not k positives exist."""
    from ra_sdk.scoring.cpu.score import topk_mean

    rows = [
        rng.random(1024),  # all positive
        np.where(rng.random(1024) < 0.6, 0.0, rng.random(1024)),  # a plateau of zeros (an anomaly map)
        np.where(rng.random(1024) < 0.99, 0.0, rng.random(1024)),  # fewer than k positives
        rng.standard_normal(1024),  # negatives too
        np.full(1024, -np.inf),  # nothing at all
        np.zeros(1024),
    ]
    v = np.stack(rows)
    want = -np.sort(-v, axis=1)[:, :k].mean(1)
    got = topk_mean(v, k)
    assert np.array_equal(got, want)  # exact equality (a zero row may differ in the sign of 0.0)
    assert got[:4].tobytes() == want[:4].tobytes()
    with pytest.raises(ValueError, match="k must be"):
        topk_mean(v, 0)


def test_small_foreground_scores_finite_not_minus_inf(rng):
    """Fewer foreground pixels than k: the outside counts as zero (it scored -inf once, and
    -Infinity reached results.jsonl)."""
    amap = rng.random((2, 64, 64)).astype(np.float32)
    mask = np.zeros((2, 64, 64), bool)
    mask[0, 10:20, 10:20] = True  # 100 pixels, k = 205
    mask[1, :, :40] = True  # 2560 pixels
    masked = np.where(mask, amap, 0).reshape(2, -1).astype(np.float64)
    k = round(0.05 * 64 * 64)
    top = scoring.image_score(amap, mask, aggregation="topk", topk=0.05)
    np.testing.assert_array_equal(top, -np.sort(-masked, axis=1)[:, :k].mean(1))
    assert top[0] == pytest.approx(masked[0].sum() / k)
    np.testing.assert_array_equal(scoring.image_score(amap, mask, aggregation="max"), [amap[0][mask[0]].max(), amap[1][mask[1]].max()])
    empty = np.zeros_like(mask)
    for how in ("mean", "max", "topk"):
        assert np.all(scoring.image_score(amap, empty, aggregation=how) == 0)


def test_score_options_and_aggregations(rng):
    x = brain_like(rng, n=3)
    x_ph = pseudo_healthy(rng, x)
    plain = scoring.anomaly_map(x, x_ph, config=ScoreConfig(perceptual="none", use_clahe=False))
    np.testing.assert_allclose(plain, np.abs(x_ph - x), atol=1e-7)
    amap = scoring.anomaly_map(x, x_ph)
    np.testing.assert_allclose(scoring.image_score(amap), amap.reshape(3, -1).mean(1), rtol=1e-6)
    np.testing.assert_allclose(scoring.image_score(amap, aggregation="max"), amap.reshape(3, -1).max(1))
    k = round(0.01 * 128 * 128)
    top = np.sort(amap.reshape(3, -1), 1)[:, ::-1][:, :k].mean(1)
    np.testing.assert_allclose(scoring.image_score(amap, aggregation="topk", topk=0.01), top, rtol=1e-6)
    mask = np.zeros((128, 128), bool)
    mask[30:90, 30:90] = True
    np.testing.assert_allclose(scoring.image_score(amap, mask), amap[:, mask].astype(np.float64).mean(1), rtol=1e-9)
    assert scoring.study_score([0.1, 0.5, 0.3]) == (0.5, 1)
    assert scoring.study_score([0.1, 0.5, 0.3], how="topk", k=2) == (pytest.approx(0.4), 1)
    with pytest.raises(ConfigError, match="valid: mean, topk, max"):
        ScoreConfig(aggregation="median")
    with pytest.raises(ValueError, match="at least one"):
        scoring.study_score([])


# ----------------------------------------------------------------------------- GPU path
@pytest.fixture
def cp():
    return pytest.importorskip("cupy")


@pytest.mark.needs_cuda
def test_gpu_clahe_large_and_many(rng, cp):
    x = rng.random((3, 512, 512), dtype=np.float32)
    assert_clahe_close(cp.asnumpy(scoring.clahe(cp.asarray(x))), skimage_clahe(x))
    x = brain_like(rng, n=64)
    np.testing.assert_array_equal(cp.asnumpy(scoring.clahe(cp.asarray(x))), scoring.clahe(x))


@pytest.mark.needs_cuda
def test_gpu_fused_score_matches_cpu(rng, cp):
    from ra_sdk import kernels

    x = brain_like(rng, n=8)
    x_ph = pseudo_healthy(rng, x)
    mask = (rng.random((128, 128)) > 0.2).astype(np.float32)
    for m in (None, mask):
        ref = scoring.anomaly_map(x, x_ph, mask=m)
        got, (sums, maxs) = kernels.fused_structural_map(cp.asarray(x), cp.asarray(x_ph), mask=None if m is None else cp.asarray(m), with_stats=True)
        got = cp.asnumpy(got)
        assert np.abs(got - ref).max() <= TOL["map_rel"] * ref.max()
        np.testing.assert_allclose(cp.asnumpy(sums) / (128 * 128), ref.reshape(8, -1).mean(1), rtol=1e-5)
        np.testing.assert_allclose(cp.asnumpy(maxs), ref.reshape(8, -1).max(1), rtol=1e-5)
    s_gpu = cp.asnumpy(scoring.score_batch(cp.asarray(x), cp.asarray(x_ph))[1])
    np.testing.assert_allclose(s_gpu, scoring.score_batch(x, x_ph)[1], rtol=1e-5)


def test_research_pipeline_of_the_benchmark_computes_the_product_score(tmp_path):
    """The speed benchmark's baseline (PyTorch eager, scikit-image, scipy; one image at a
    time) must compute the shipped score, foreground mask included, or its speed-up is a
    comparison of two different things. Tolerance: rtol 1e-3 (seen: 9e-5, Gaussian
    truncation at the mask's edge and torch vs ONNX Runtime convolutions)."""
    pytest.importorskip("torch")
    from ra_sdk.bench import reference_pipeline
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.demo_studies import DemoSpec, write_demo_studies
    from ra_sdk.engine import read_engine
    from ra_sdk.evaluation import load_labelled_studies
    from ra_sdk.network import load_engine_network
    from ra_sdk.scorer import Scorer

    eng = read_engine(DEMO_ENGINE)
    assert eng.meta.score.foreground > 0  # the case that once went missing
    write_demo_studies(tmp_path, DemoSpec(n_normal=4, n_per_type=1, n_volumes=0))
    imgs, _, _ = load_labelled_studies(tmp_path, eng.meta.preset)
    imgs = imgs[:8]
    ref = reference_pipeline(load_engine_network(eng), eng.meta.score)
    expected = np.array([ref(x) for x in imgs])
    with Scorer(eng, backend="onnxruntime", device="cpu", precision="fp32") as sc:
        _, got, _ = sc.score(imgs, maps=False, recons=False)
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_a_score_does_not_depend_on_its_batch():
    """A study's score must not depend on how many studies share its batch, or which: a
    resumed run and a Ray run batch differently from an uninterrupted local one. Exact on
    the CPU path (OpenCV's 1-, 3- and 4-channel resize code once broke it in the last bits)."""
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.engine import read_engine
    from ra_sdk.scorer import Scorer

    x = normal_batch("test", 40, start=0).astype(np.float32)
    eng = read_engine(DEMO_ENGINE)
    for precision in ("fp32", "int8"):
        with Scorer(eng, backend="onnxruntime", device="cpu", precision=precision, batch_size=64) as sc:
            _, ref, _ = sc.score(x[:33], maps=False, recons=False)
            for n in (1, 2, 3, 4, 5, 8, 17, 32):
                _, got, _ = sc.score(x[:n], maps=False, recons=False)
                assert np.array_equal(got, ref[:n]), (precision, n)
            _, got, _ = sc.score(x[3:33], maps=False, recons=False)
            assert np.array_equal(got, ref[3:33]), precision


@pytest.mark.parametrize("config", [None, ScoreConfig(perceptual="structural", aggregation="mean"), ScoreConfig(perceptual="features", use_clahe=False, foreground=0.1, aggregation="max"),
                                    ScoreConfig(perceptual="none", aggregation="topk", topk=0.02)], ids=["engine", "structural", "no-clahe", "residual"])
def test_the_cpu_pipeline_gives_the_calling_thread_bits(config, monkeypatch):
    """Scorer.score_batch on the CPU runs host steps on a side thread beside the networks,
    chunk by chunk: maps, scores and reconstructions equal the calling thread's alone, bit
    for bit, for any chunk size and scoring config."""
    from concurrent.futures import ThreadPoolExecutor

    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.engine import read_engine
    from ra_sdk.runners import make_runner
    from ra_sdk.scorer import Scorer
    from ra_sdk.scoring.cpu.threads import MIN_PIXELS

    x = normal_batch("test", 21, start=100).astype(np.float32)
    assert x.size >= MIN_PIXELS  # large enough for the pipeline
    eng = read_engine(DEMO_ENGINE)
    cfg = config or eng.meta.score
    recon = make_runner(eng, backend="onnxruntime", device="cpu")
    feats = make_runner(eng, backend="onnxruntime", device="cpu", network="features") if cfg.perceptual == "features" else None
    sc = Scorer.from_runners(cfg, recon, feats)
    sc.pipeline_chunk = 0
    ref = sc.score_batch(x)
    for chunk in (32, 8, 5):
        sc.pipeline_chunk = chunk
        got = sc.score_batch(x)
        for a, b in zip(got, ref):
            assert a.tobytes() == b.tobytes(), chunk
    assert np.isfinite(ref[1]).all() and ref[0].shape == (21, 128, 128)
    with ThreadPoolExecutor(3) as wide, monkeypatch.context() as m:  # a larger CPU's side pool
        m.setattr("ra_sdk.scorer.side_pool", lambda: wide)
        sc.pipeline_chunk = 4
        for a, b in zip(sc.score_batch(x), ref):
            assert a.tobytes() == b.tobytes()
    sc.close()


def test_the_cpu_pipeline_is_for_cpu_runners_and_large_batches_only(monkeypatch):
    """A GPU runner fed from host memory returns device arrays: its host-side mask and
    CLAHE would mix host and device arrays, so only CPU runners pipeline; a small batch
    (screen_one) stays in the calling thread too."""
    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.data.augment import normal_batch
    from ra_sdk.engine import read_engine
    from ra_sdk.runners import make_runner
    from ra_sdk.scorer import Scorer

    eng = read_engine(DEMO_ENGINE)
    recon = make_runner(eng, backend="onnxruntime", device="cpu")
    sc = Scorer.from_runners(eng.meta.score, recon, make_runner(eng, backend="onnxruntime", device="cpu", network="features"))
    x = normal_batch("test", 16, start=0).astype(np.float32)
    ref = sc.score_batch(x)[1]

    def no_side():
        raise AssertionError("the side thread was used")

    monkeypatch.setattr("ra_sdk.scorer.side_pool", no_side)
    assert np.array_equal(sc.score_batch(x[:2])[1], ref[:2])  # small: the calling thread
    recon.device = "cuda"  # as a GPU runner would say (its outputs here are still host arrays)
    assert np.array_equal(sc.score_batch(x)[1], ref)
    sc.close()


def test_the_fast_cpu_score_steps_give_the_reference_bits():
    """Top-k by selection equals top-k by a full sort (ties and masks included), and the
    feature distance split over threads in chunks equals one call in the calling thread,
    bit for bit."""
    from ra_sdk.scoring import image_score
    from ra_sdk.scoring.cpu.score import feature_distance

    rng = np.random.default_rng(3)
    for trial in range(60):
        b, h, w = (int(v) for v in rng.integers(1, 30, 3))
        a = rng.random((b, h, w)).astype(np.float32)
        if trial % 3 == 0:
            a = np.round(a * 4) / 4  # many ties
        mask = rng.random((b, h, w)) > 0.3 if trial % 2 else None
        flat = a.reshape(b, -1).astype(np.float64)
        if mask is not None:
            flat = np.where(mask.reshape(b, -1), flat, 0.0)  # outside the mask counts as zero
        for topk in (0.01, 0.05, 0.5, 1.0):
            k = max(1, round(topk * flat.shape[1]))
            ref = (-np.sort(-np.nan_to_num(flat, nan=-np.inf), axis=1)[:, :k]).mean(1)
            assert np.array_equal(image_score(a, mask, aggregation="topk", topk=topk), ref), (trial, topk)

    feats_a = [rng.standard_normal((21, c, s, s)).astype(np.float32) for c, s in ((16, 64), (32, 32), (64, 16))]
    feats_b = [f + 0.1 * rng.standard_normal(f.shape).astype(np.float32) for f in feats_a]
    one = feature_distance(feats_a, feats_b, (128, 128), threads=1)
    many = feature_distance(feats_a, feats_b, (128, 128), threads=2)
    assert one.shape == (21, 128, 128) and np.array_equal(one, many)
