import json
import math
import time

import numpy as np
import pytest

import ra_sdk

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from ra_sdk.train import CheckpointError, TrainConfig, Trainer, build, load_model  # noqa: E402
from ra_sdk.train.data import augment_batch  # noqa: E402


@pytest.mark.parametrize("name", ra_sdk.list_models())
def test_shapes_at_every_scale(name):
    cfg = ra_sdk.get_model_config(name)
    net = build(cfg).eval()
    x = torch.rand(2, 1, cfg.image_size, cfg.image_size)
    mu, logvar, emb = net.encoder(x)
    assert mu.shape == logvar.shape == (2, cfg.zdim)
    assert len(emb) == len(cfg.channels)
    for i, (e, c) in enumerate(zip(emb, cfg.channels)):
        assert e.shape == (2, c, cfg.image_size // 2 ** (i + 1), cfg.image_size // 2 ** (i + 1))
    x_ph, emb2 = net.reconstruct(x)
    assert len(emb2) == len(emb)
    assert x_ph.shape == x.shape and 0 <= float(x_ph.min()) and float(x_ph.max()) <= 1
    torch.testing.assert_close(net.reconstruct(x)[0], x_ph)  # deterministic: z = mu


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    base = ((yy - 16) ** 2 + (xx - 16) ** 2 < 150).float() * 0.7
    return (base + 0.05 * torch.rand(8, 1, 32, 32, generator=g)).clamp(0, 1)


#: small model configs for tests, passed to the Trainer (the registry is never written to)
TEST_32 = ra_sdk.ModelConfig("test-32", channels=(8, 16, 16), zdim=16, image_size=32)
TEST_32B = ra_sdk.ModelConfig("test-32b", channels=(8, 16, 32), zdim=16, image_size=32)


def _small_trainer(tmp_path, objective, **kw):
    kw = {"batch_size": 8, "lr": 1e-3, "augment": False, **kw}
    return Trainer(TrainConfig(objective=objective, model="test-32", **kw), tmp_path / objective, device="cpu", model=TEST_32)


@pytest.mark.parametrize("objective", ["ra", "ae", "vae"])
@pytest.mark.slow
def test_steps_are_finite_and_learn_the_batch(tmp_path, batch, objective):
    tr = _small_trainer(tmp_path, objective)
    terms = [tr.train_step(batch) for _ in range(15)]
    assert all(math.isfinite(v) for t in terms for v in t.values())
    # The reconstruction term (training mode) falls on a fixed batch.
    assert np.mean([t["rec_mse"] for t in terms[-3:]]) < 0.8 * np.mean([t["rec_mse"] for t in terms[:3]])
    if objective == "ra":
        assert {"loss_e", "loss_d", "rec_mse", "kl", "expelbo_rec", "expelbo_fake", "emb"} <= set(terms[0])
        assert terms[-1]["emb"] < terms[0]["emb"]


def test_training_is_reproducible_on_cpu(tmp_path, batch):
    a = _small_trainer(tmp_path / "a", "ra")
    b = _small_trainer(tmp_path / "b", "ra")
    for _ in range(3):
        ta, tb = a.train_step(batch), b.train_step(batch)
    assert ta == tb


def test_fit_resume_and_checkpoint_round_trip(tmp_path, batch):
    pool = batch.repeat(2, 1, 1, 1).numpy()
    tr = _small_trainer(tmp_path, "ra", epochs=2, checkpoint_every=1)
    summary = tr.fit(pool, pool[:4], resume=False)
    assert summary["steps"] == 4 and (tmp_path / "ra" / "best" / "model.safetensors").exists()
    lines = (tmp_path / "ra" / "epochs.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "val_mse" in json.loads(lines[-1])
    net, cfg = load_model(tmp_path / "ra" / "last")
    for k, v in tr.net.state_dict().items():
        assert torch.equal(net.state_dict()[k], v.cpu()), k  # bit-exact
    assert cfg["train"]["objective"] == "ra" and cfg["preset"]["name"] == "brain-mri-t1"
    # Resume continues from the last step.
    tr2 = _small_trainer(tmp_path, "ra", epochs=3, checkpoint_every=1)
    assert tr2.resume() and tr2.step == 4
    assert tr2.fit(pool, pool[:4])["steps"] == 6


def test_a_learning_rate_held_in_a_tensor_checkpoints_and_resumes(tmp_path, batch):
    # A captured CUDA-graph step reads its learning rate from a device tensor (fast.make_optimizers);
    # here the same on the CPU: the checkpoint stores the value, resume fills the live tensor.
    def tensor_lr(tr):
        tr.opt_e = torch.optim.Adam(tr.net.encoder.parameters(), lr=torch.tensor(tr.cfg.lr_at(0)), foreach=False)
        tr.opt_d = torch.optim.Adam(tr.net.decoder.parameters(), lr=torch.tensor(tr.cfg.lr_at(0)), foreach=False)
        return tr

    pool = batch.repeat(2, 1, 1, 1).numpy()
    tr = tensor_lr(_small_trainer(tmp_path, "ra", epochs=1, checkpoint_every=1))
    tr.fit(pool, pool[:4], resume=False)
    saved = json.loads((tmp_path / "ra" / "last" / "config.json").read_text())
    lr = saved["optimizers"]["opt_e"]["param_groups"][0]["lr"]
    assert isinstance(lr, float) and lr == pytest.approx(float(tr.opt_e.param_groups[0]["lr"]))
    tr2 = tensor_lr(_small_trainer(tmp_path, "ra", epochs=2, checkpoint_every=1))
    live = tr2.opt_e.param_groups[0]["lr"]
    live.fill_(123.0)
    assert tr2.resume()
    assert tr2.opt_e.param_groups[0]["lr"] is live and float(live) == pytest.approx(lr)
    assert tr2.opt_e.state_dict()["state"], "Adam moments restored"


def test_tampered_and_pickled_checkpoints_fail_safely(tmp_path, batch):
    tr = _small_trainer(tmp_path, "ae", epochs=1)
    tr.fit(batch.numpy(), batch[:2].numpy(), resume=False)
    good = tmp_path / "ae" / "best"
    w = good / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="cannot load weights safely"):
        load_model(good)
    # A pickle (torch.save) dressed as safetensors is refused, never unpickled.
    marker = tmp_path / "pwned"
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    w.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_model(good)
    assert not marker.exists()
    (good / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(good)


def test_augment_batch_keeps_shape_and_range(batch):
    g = torch.Generator().manual_seed(1)
    y = augment_batch(batch, g)
    assert y.shape == batch.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.equal(y, batch)


def test_unknown_objective_is_refused():
    with pytest.raises(ra_sdk.ConfigError, match="valid: ra, ae, vae"):
        TrainConfig(objective="gan")


def _reference_ra_step(net, opt_e, opt_d, x, gen, scale, cfg, zdim):
    """The paper code's RA step written out plainly (requires_grad toggled per step, every
    tensor kept, no shared passes): the slow obvious reference for Trainer._ra_step."""
    from ra_sdk.train.losses import embedding_loss
    from ra_sdk.train.losses import kl_div as _kl
    from ra_sdk.train.losses import sse as _sse

    E, D, rp = net.encoder, net.decoder, net.reparameterize
    noise = torch.randn(x.shape[0], zdim, generator=gen)
    for p in E.parameters():
        p.requires_grad = True
    for p in D.parameters():
        p.requires_grad = False
    fake = D(noise)
    mu, logvar, emb_x = E(x)
    z = rp(mu, logvar, gen)
    rec = D(z)
    rec_mu, rec_logvar, emb_rec = E(rec.detach())
    fake_mu, fake_logvar, _ = E(fake.detach())
    rec_rec = D(rp(rec_mu, rec_logvar, gen))
    rec_fake = D(rp(fake_mu, fake_logvar, gen))
    exp_r = torch.exp(-2 * scale * (cfg.beta_rec * _sse(rec, rec_rec) + cfg.beta_neg * _kl(rec_mu, rec_logvar))).mean()
    exp_f = torch.exp(-2 * scale * (cfg.beta_rec * _sse(fake, rec_fake) + cfg.beta_neg * _kl(fake_mu, fake_logvar))).mean()
    loss_e = scale * (cfg.beta_rec * _sse(x, rec).mean() + cfg.beta_kl * _kl(mu, logvar).mean()) + 0.25 * (exp_r + exp_f) + cfg.emb_weight * embedding_loss(emb_x, emb_rec)
    opt_e.zero_grad()
    loss_e.backward()
    opt_e.step()
    for p in E.parameters():
        p.requires_grad = False
    for p in D.parameters():
        p.requires_grad = True
    fake = D(noise)
    rec = D(z.detach())
    rec_mu, rec_logvar, _ = E(rec)
    fake_mu, fake_logvar, _ = E(fake)
    rec_rec = D(rp(rec_mu, rec_logvar, gen).detach())
    rec_fake = D(rp(fake_mu, fake_logvar, gen).detach())
    loss_d = scale * (cfg.beta_rec * _sse(x, rec).mean() + 0.5 * cfg.beta_kl * (_kl(rec_mu, rec_logvar).mean() + _kl(fake_mu, fake_logvar).mean())
                      + cfg.gamma_r * 0.5 * cfg.beta_rec * (_sse(rec.detach(), rec_rec).mean() + _sse(fake.detach(), rec_fake).mean()))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    for p in E.parameters():
        p.requires_grad = True


def test_ra_step_matches_the_plain_reference(tmp_path, batch):
    """The trainer's RA step (decoder frozen in the encoder step, the prior sample made
    without a graph) updates every weight as the plain transcription does: max |diff| 1e-6."""
    import copy

    tr = _small_trainer(tmp_path, "ra")
    ref_net = copy.deepcopy(tr.net)
    opt_e = torch.optim.Adam(ref_net.encoder.parameters(), lr=tr.cfg.lr)
    opt_d = torch.optim.Adam(ref_net.decoder.parameters(), lr=tr.cfg.lr)
    gen = torch.Generator().manual_seed(tr.cfg.seed)
    for _ in range(2):
        tr.train_step(batch)
        _reference_ra_step(ref_net, opt_e, opt_d, batch, gen, tr.scale, tr.cfg, tr.model_cfg.zdim)
    for (name, a), (_, b) in zip(tr.net.state_dict().items(), ref_net.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (name, float((a - b).abs().max()))
    assert all(p.requires_grad for p in tr.net.parameters())


def test_init_from_warm_starts_and_refuses_another_config(tmp_path, batch):
    from ra_sdk.errors import ConfigError

    a = _small_trainer(tmp_path / "a", "ae")
    a.train_step(batch)
    a._save("best")
    b = _small_trainer(tmp_path / "b", "ra", init_from=str(tmp_path / "a" / "ae" / "best"), seed=7)
    for (name, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    with pytest.raises(ConfigError, match="another config"):
        Trainer(TrainConfig(objective="ra", model="test-32b", init_from=str(tmp_path / "a" / "ae" / "best")), tmp_path / "c", device="cpu", model=TEST_32B)


# ------------------------------------------------------------------- the fast step
def _pair(tmp_path, objective, **kw):
    """A reference trainer and a fast one with the same weights and generator state."""
    ref = _small_trainer(tmp_path / "ref", objective, step="reference", **kw)
    fast = _small_trainer(tmp_path / "fast", objective, step="fast", **kw)
    fast.net.load_state_dict(ref.net.state_dict())
    return ref, fast


def _max_weight_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True))


@pytest.mark.parametrize("objective", ["ra", "ae", "vae"])
def test_fast_step_equals_the_reference_step_on_cpu(tmp_path, batch, objective):
    """fp32 on the CPU: after 3 steps every weight of the fast step (device random buffer,
    no per-step sync, foreach Adam) equals the reference step's to 1e-6 (the two Adam
    implementations differ in the order of a few float operations; measured: <= 3e-8)."""
    ref, fast = _pair(tmp_path, objective)
    for _ in range(3):
        m_ref = ref.train_step(batch)
        m_fast = fast.train_step(batch)
    assert _max_weight_diff(ref, fast) <= 1e-6
    assert m_fast.keys() == m_ref.keys()
    for k in m_ref:
        assert m_fast[k] == pytest.approx(m_ref[k], rel=1e-5, abs=1e-7), k


def test_fast_fit_equals_reference_fit(tmp_path, batch):
    """The whole loop with the fast step (pool on the device, augmentation, losses read
    every log_every steps) trains to the same weights as with the reference step."""
    pool = batch.repeat(3, 1, 1, 1).numpy()
    ref, fast = _pair(tmp_path, "ra", epochs=2, augment=True, log_every=4, select="mse")
    s_ref = ref.fit(pool, pool[:4], resume=False)
    s_fast = fast.fit(pool, pool[:4], resume=False)
    assert s_ref["steps"] == s_fast["steps"] == 6 and s_fast["step_kind"] == "fast"
    assert _max_weight_diff(ref, fast) <= 1e-5
    assert s_fast["best_val_mse"] == pytest.approx(s_ref["best_val_mse"], rel=1e-4)
    epochs = [json.loads(x) for x in (tmp_path / "fast" / "ra" / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(math.isfinite(e["val_mse"]) for e in epochs)


@pytest.fixture
def exact_cuda():
    """fp32 on the GPU without TF32 and with deterministic cuDNN algorithms: a non-deterministic
    weight-gradient algorithm changes the last bits of a gradient, and Adam's first steps
    (update ~ lr * sign(grad) where a gradient is near 0) can turn that into a full lr of
    difference; restored afterwards."""
    b = torch.backends
    saved = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark)
    b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = False
    b.cudnn.deterministic, b.cudnn.benchmark = True, False
    yield
    b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark = saved


def _worst_weight(a, b) -> str:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    k = max(sa, key=lambda n: float((sa[n].float() - sb[n].float()).abs().max()))
    return f"{k}: {float((sa[k].float() - sb[k].float()).abs().max()):.3g}"


@pytest.mark.needs_cuda
@pytest.mark.parametrize("kind", ["fast", "graph"])
def test_gpu_step_equals_the_reference_step_on_gpu(tmp_path, batch, exact_cuda, kind):
    """On a GPU in fp32 (no autocast): after 5 steps every weight of the fast (eager) or
    captured step equals the reference step's to 1e-4 (the CPU test's 1e-6 bar, widened for
    fused CUDA Adam against foreach Adam). The capture's 3 warm-up steps train, so the
    reference runs 4 steps where the first call of the captured step runs 4."""
    x = batch.cuda()
    cfg = dict(objective="ra", model="test-32", batch_size=8, lr=1e-3, augment=False, amp=False, channels_last=False)
    ref = Trainer(TrainConfig(**cfg, step="reference"), tmp_path / "r", device="cuda", model=TEST_32)
    fast = Trainer(TrainConfig(**cfg, step=kind), tmp_path / "f", device="cuda", model=TEST_32)
    fast.net.load_state_dict(ref.net.state_dict())
    first = 4 if kind == "graph" else 1
    fast.fast(x)
    for _ in range(first):
        ref.train_step(x)
    for _ in range(5 - first):
        fast.fast(x)
        ref.train_step(x)
    torch.cuda.synchronize()
    assert _max_weight_diff(ref, fast) <= 1e-4, _worst_weight(ref, fast)


def test_learning_rate_rules():
    cfg = TrainConfig(lr=1e-4, batch_size=32, base_batch=8, lr_rule="sqrt", warmup_steps=10)
    assert cfg.lr_at(0) == pytest.approx(2e-4 / 10) and cfg.lr_at(9) == pytest.approx(2e-4) and cfg.lr_at(500) == pytest.approx(2e-4)
    assert TrainConfig(lr=1e-4, batch_size=32, lr_rule="linear").lr_at(0) == pytest.approx(4e-4)
    assert TrainConfig(lr=1e-4, batch_size=32).lr_at(7) == pytest.approx(1e-4)
    with pytest.raises(ra_sdk.ConfigError, match="epochs must be at least 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ra_sdk.ConfigError, match="valid: constant, linear, sqrt"):
        TrainConfig(lr_rule="cosine")


def test_a_diverging_run_never_overwrites_last_or_best(tmp_path, batch, monkeypatch):
    pool = batch.repeat(2, 1, 1, 1).numpy()
    tr = _small_trainer(tmp_path, "ra", epochs=1, select="mse")
    tr.fit(pool, pool[:4], resume=False)
    saved = {p: p.read_bytes() for p in (tmp_path / "ra").rglob("*.safetensors")}
    assert len(saved) == 4  # best and last: weights and optimiser state
    tr2 = _small_trainer(tmp_path, "ra", epochs=3, select="mse", checkpoint_every=1)
    real = tr2._ra_step

    def poisoned(x):
        out = real(x)
        with torch.no_grad():
            for p in tr2.net.parameters():
                p.fill_(float("nan"))
        return {**out, "loss_e": float("nan")}

    monkeypatch.setattr(tr2, "_ra_step", poisoned)
    summary = tr2.fit(pool, pool[:4], resume=True)
    assert summary["stopped_by"] == "non-finite loss"
    assert {p: p.read_bytes() for p in (tmp_path / "ra").rglob("*.safetensors")} == saved


def test_time_budget_and_the_cpu_notice(tmp_path, batch, caplog):
    pool = batch.repeat(8, 1, 1, 1).numpy()
    tr = _small_trainer(tmp_path, "ae", epochs=50, select="mse", max_minutes=0.002)  # 0.12 s
    with caplog.at_level("WARNING"):
        t = time.perf_counter()
        summary = tr.fit(pool, pool[:4], resume=False)
        elapsed = time.perf_counter() - t
    assert summary["stopped_by"] == "time budget" and 1 <= summary["steps"] < 50 * 8
    per_step = elapsed / summary["steps"]
    assert summary["seconds"] <= 0.12 + 3 * per_step + 1.0  # within a step (plus one validation)
    assert any("training on the CPU" in r.message and "s per step" in r.message and "would take about" in r.message for r in caplog.records)


def test_validation_auroc_is_the_product_score_on_validation_anomalies():
    """The selector scores with the Scorer (torch runner of the in-memory network); the
    same AUROCs come out of the evaluation path (reconstructions + anomaly_map) on the
    same validation suite."""
    from ra_sdk.train.selection import ValidationAUROC

    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.engine import read_engine
    from ra_sdk.evaluation import evaluate, reconstruct_suite
    from ra_sdk.network import load_engine_network, numpy_functions

    net = load_engine_network(read_engine(DEMO_ENGINE))
    sel = ValidationAUROC(n_normal=16, n_per_type=3)
    got = sel(net)
    assert set(got) == {*sel.suite.sets, "mean"} and all(0 <= v <= 1 for v in got.values())

    recon, feats = numpy_functions(net)
    ref = evaluate(sel.suite, reconstruct_suite(recon, sel.suite), sel.score, feats=feats)
    for t in sel.suite.sets:
        assert got[t] == pytest.approx(ref[t]["auroc"], abs=1e-9), t


@pytest.mark.parametrize("name", ra_sdk.list_models())
def test_multiply_adds_per_image_match_torchs_count(name):
    """configs.macs_per_image (the architecture's arithmetic, no torch) equals torch's
    FlopCounterMode count of convolutions and matmuls / 2, for both exported networks."""
    from torch.utils.flop_counter import FlopCounterMode

    from ra_sdk.configs import macs_per_image
    from ra_sdk.network import network_module

    cfg = ra_sdk.get_model_config(name)
    net = build(cfg).eval()
    for network in ("recon", "features"):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            network_module(net, network)(torch.rand(1, 1, cfg.image_size, cfg.image_size))
        assert macs_per_image(cfg, network) == counter.get_total_flops() // 2, network
