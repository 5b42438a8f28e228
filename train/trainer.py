"""The trainer: Soft-IntroVAE encoder/decoder steps with RA's multi-scale reversed
embedding loss (DESIGN.md section 2), and the AE and VAE baselines on the same backbone.

Reports go through callbacks (a CSV + JSONL log by default; a progress display is a
callback the caller adds); nothing is printed here. Checkpoints are safetensors + JSON (train/checkpoint.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ra_sdk.configs import ModelConfig, get_model_config
from ra_sdk.errors import ConfigError
from ra_sdk.network import RANet, build
from ra_sdk.preprocess import get_preset

from . import checkpoint as ckpt

log = logging.getLogger(__name__)
OBJECTIVES = ("ra", "ae", "vae")


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "ra"  # "ra" (the method), "ae" or "vae" (baselines, same backbone)
    model: str = "ra-tiny"
    preset: str = "brain-mri-t1"
    batch_size: int = 32
    lr: float = 5e-5  # the paper code's learning rate (two Adam optimisers)
    epochs: int = 10
    max_steps: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # 0 = no limit; stops cleanly, checkpoint kept
    pool_size: int = 2048  # augmented normal images made up front (one epoch)
    val_size: int = 128
    beta_rec: float = 0.5
    beta_kl: float = 1.0
    beta_neg: float = 128.0
    gamma_r: float = 1e-8
    emb_weight: float = 0.005  # weight of the reversed embedding loss
    augment: bool = True  # on-the-fly affine (10 deg, translate 0.1, scale 0.9-1.1) + h-flip
    patience: int = 5  # early stopping: epochs without a better validation loss
    checkpoint_every: int = 200  # steps
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA
    workers: int = 0  # processes making the augmented pool (0 = in-process)
    init_from: str = ""  # start from this checkpoint's weights (fresh optimisers); "" = random init

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Callback:
    """Hooks the trainer calls; override what you need."""

    def on_start(self, total_steps: int, step: int) -> None: ...

    def on_end(self, summary: dict[str, Any]) -> None: ...

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


class CSVLogger(Callback):
    """Appends step metrics to ``log.csv`` and epoch metrics to ``epochs.jsonl``."""

    def __init__(self, out: Path, every: int = 10):
        self.out, self.every = Path(out), every
        self._header: list[str] | None = None

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step % self.every:
            return
        path = self.out / "log.csv"
        keys = ["step", *sorted(metrics)]
        if self._header is None:
            self._header = keys
            if not path.exists():
                path.write_text(",".join(keys) + "\n")
        with open(path, "a") as fh:
            fh.write(",".join(str(step) if k == "step" else f"{metrics.get(k, float('nan')):.6g}" for k in self._header) + "\n")

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        import json

        with open(self.out / "epochs.jsonl", "a") as fh:
            fh.write(json.dumps({"epoch": epoch, **metrics}) + "\n")


def _make_pool_chunk(args: tuple[str, int, int, int, int]) -> np.ndarray:
    from ra_sdk.data.augment import normal_batch

    split, start, n, seed, size = args
    return normal_batch(split, n, start=start, seed=seed, size=size)


def make_pool(split: str, n: int, *, seed: int, size: int, workers: int = 0) -> np.ndarray:
    """n augmented normal images of ``split`` (deterministic): (n, 1, size, size) float32."""
    chunk = 64
    jobs = [(split, s, min(chunk, n - s), seed, size) for s in range(0, n, chunk)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_make_pool_chunk, jobs)
    else:
        parts = [_make_pool_chunk(j) for j in jobs]
    return np.concatenate(parts)[:, None]


def images_from_folder(folder: str | Path, preset_name: str, size: int) -> np.ndarray:
    """Every screened slice of the normal studies under ``folder``: (N, 1, size, size)."""
    from ra_sdk.io import read_folder_images

    return read_folder_images(folder, get_preset(preset_name).replace(size=size))[:, None]


def training_data(cfg: TrainConfig, *, data: str | Path | None = None, model: ModelConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) images (N, 1, S, S): with ``data``, every screened slice of the
    normal studies under it, a tenth (at least one) held out at random (seeded); without,
    augmented pools of the embedded brain data's train and validation splits."""
    size = (model or get_model_config(cfg.model)).image_size
    if data is None:
        return make_pool("train", cfg.pool_size, seed=cfg.seed, size=size, workers=cfg.workers), make_pool("val", cfg.val_size, seed=cfg.seed, size=size)
    imgs = images_from_folder(data, cfg.preset, size)
    order = np.random.default_rng(cfg.seed).permutation(len(imgs))
    n_val = max(1, len(imgs) // 10)
    return imgs[order[n_val:]], imgs[order[:n_val]]


def augment_batch(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random affine (rotation 10 deg, translate 0.1, scale 0.9-1.1) and horizontal flip."""
    b = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=g, device=g.device).to(dev) * (hi - lo) + lo

    ang = u(-10, 10) * math.pi / 180
    sc = u(0.9, 1.1)
    tx, ty = u(-0.2, 0.2), u(-0.2, 0.2)  # 0.1 of the side in [-1, 1] coordinates
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _sse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).sum(1)


def _kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """No weight gradients for ``module`` inside the block (gradients still flow through it)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def embedding_loss(real: Sequence[torch.Tensor], rec: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of 0.5 * MSE + mean(1 - cosine similarity) (per image, flattened)."""
    total = torch.zeros((), device=real[0].device)
    for a, b in zip(real, rec):
        a, b = a.float(), b.float()
        total = total + 0.5 * F.mse_loss(a, b) + (1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean()
    return total


class Trainer:
    """Trains one network by objective; see :class:`TrainConfig` and :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, out: str | Path, *, device: str = "auto", callbacks: Sequence[Callback] = (), model: ModelConfig | None = None):
        """``model``: a model config to train instead of the registered ``cfg.model`` (its
        name must be ``cfg.model``); the registry is never written to."""
        self.cfg = cfg
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        if model is not None and model.name != cfg.model:
            raise ConfigError(f"the model config is named {model.name!r}, the training config trains {cfg.model!r}")
        self.model_cfg = model or get_model_config(cfg.model)
        torch.manual_seed(cfg.seed)
        self.net: RANet = build(self.model_cfg).to(self.device)
        if self.cuda and cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # runtime API, not in the stubs
        if cfg.init_from:
            self._init_from(Path(cfg.init_from))
        self.opt_e = torch.optim.Adam(self.net.encoder.parameters(), lr=cfg.lr)
        self.opt_d = torch.optim.Adam(self.net.decoder.parameters(), lr=cfg.lr)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.callbacks = [CSVLogger(self.out), *callbacks]
        self.scale = 1.0 / (self.model_cfg.image_size**2)
        self.step = 0
        self.epoch = 0
        self.best_val = math.inf
        self.stale_epochs = 0

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and self.cfg.amp)

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """One optimisation step on batch x (B, 1, H, W); returns the loss terms."""
        self.net.train()
        if self.cfg.objective == "ra":
            return self._ra_step(x)
        return self._baseline_step(x)

    def _baseline_step(self, x: torch.Tensor) -> dict[str, float]:
        cfg, s = self.cfg, self.scale
        E, D = self.net.encoder, self.net.decoder
        with self._autocast():
            mu, logvar, _ = E(x)
            if cfg.objective == "ae":
                rec = D(mu)
                loss = F.mse_loss(rec.float(), x.float())
                kl = torch.zeros(())
            else:
                rec = D(self.net.reparameterize(mu, logvar, self.gen))
                kl = _kl(mu, logvar).mean()
                loss = s * (cfg.beta_rec * _sse(x, rec).mean() + cfg.beta_kl * kl)
        self.opt_e.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_e.step()
        self.opt_d.step()
        return {"loss": float(loss.detach()), "rec_mse": float(F.mse_loss(rec.detach().float(), x.float())), "kl": float(kl.detach())}

    def _ra_step(self, x: torch.Tensor) -> dict[str, float]:
        cfg, s = self.cfg, self.scale
        E, D, rp = self.net.encoder, self.net.decoder, self.net.reparameterize
        b = x.shape[0]
        noise = torch.randn(b, self.model_cfg.zdim, device=self.device, generator=self.gen)

        # Encoder step (decoder frozen, as in the paper's code: gradients flow through the
        # decoder into the encoder, but no decoder weight gradients are computed).
        with _frozen(D), self._autocast():
            with torch.no_grad():
                fake = D(noise)  # only ever used detached here
            mu, logvar, emb_x = E(x)
            z = rp(mu, logvar, self.gen)
            rec = D(z)
            loss_rec = _sse(x, rec).mean()
            kl_real = _kl(mu, logvar).mean()
            # One encoder pass over the detached reconstruction serves the introspective
            # term and the reversed embedding loss.
            rec_mu, rec_logvar, emb_rec = E(rec.detach())
            fake_mu, fake_logvar, _ = E(fake.detach())
            rec_rec = D(rp(rec_mu, rec_logvar, self.gen))
            rec_fake = D(rp(fake_mu, fake_logvar, self.gen))
            elbo_rec = cfg.beta_rec * _sse(rec, rec_rec) + cfg.beta_neg * _kl(rec_mu, rec_logvar)
            elbo_fake = cfg.beta_rec * _sse(fake, rec_fake) + cfg.beta_neg * _kl(fake_mu, fake_logvar)
            expelbo_rec = torch.exp(-2 * s * elbo_rec).mean()
            expelbo_fake = torch.exp(-2 * s * elbo_fake).mean()
            l_emb = embedding_loss(emb_x, emb_rec)
            loss_e = s * (cfg.beta_rec * loss_rec + cfg.beta_kl * kl_real) + 0.25 * (expelbo_rec + expelbo_fake) + cfg.emb_weight * l_emb
            self.opt_e.zero_grad(set_to_none=True)
            loss_e.backward()
        self.opt_e.step()

        # Decoder step (encoder frozen).
        with _frozen(E):
            with self._autocast():
                fake = D(noise)
                rec = D(z.detach())
                loss_rec_d = _sse(x, rec).mean()
                rec_mu, rec_logvar, _ = E(rec)
                fake_mu, fake_logvar, _ = E(fake)
                rec_rec = D(rp(rec_mu, rec_logvar, self.gen).detach())
                rec_fake = D(rp(fake_mu, fake_logvar, self.gen).detach())
                l_rr = _sse(rec.detach(), rec_rec).mean()
                l_fr = _sse(fake.detach(), rec_fake).mean()
                kl_rec = _kl(rec_mu, rec_logvar).mean()
                kl_fake = _kl(fake_mu, fake_logvar).mean()
                loss_d = s * (
                    cfg.beta_rec * loss_rec_d + 0.5 * cfg.beta_kl * (kl_rec + kl_fake) + cfg.gamma_r * 0.5 * cfg.beta_rec * (l_rr + l_fr)
                )
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        return {
            "loss_e": float(loss_e.detach()),
            "loss_d": float(loss_d.detach()),
            "rec_mse": float(loss_rec.detach()) / x[0].numel(),
            "kl": float(kl_real.detach()),
            "expelbo_rec": float(expelbo_rec.detach()),
            "expelbo_fake": float(expelbo_fake.detach()),
            "emb": float(l_emb.detach()),
        }

    # ----------------------------------------------------------------- the loop
    @torch.no_grad()
    def validate(self, val: torch.Tensor) -> float:
        """Mean per-pixel MSE of the deterministic reconstruction D(mu(E(x)))."""
        self.net.eval()
        total = 0.0
        for i in range(0, val.shape[0], 64):
            x = val[i : i + 64].to(self.device, non_blocking=True)
            with self._autocast():
                rec, _ = self.net.reconstruct(x)
            total += float(F.mse_loss(rec.float(), x.float(), reduction="sum"))
        return total / val.numel()

    def _save(self, name: str) -> None:
        rng = self.gen.get_state()
        ckpt.save(
            self.out / name,
            self.net,
            model_config=self.model_cfg,
            preset=get_preset(self.cfg.preset).replace(size=self.model_cfg.image_size).to_dict(),
            train_config=self.cfg.to_dict(),
            progress={"step": self.step, "epoch": self.epoch, "best_val": self.best_val, "stale_epochs": self.stale_epochs, "device": str(self.device)},
            optimizers={"opt_e": self.opt_e, "opt_d": self.opt_d},
            rng=rng,
        )

    def _init_from(self, path: Path) -> None:
        """Warm start (fine-tuning): the weights of another checkpoint of the same model
        config; optimisers start fresh. A later :meth:`resume` from ``out/last`` wins."""
        weights, config = ckpt.load_weights(path)
        if ModelConfig.from_dict(config["model"]) != self.model_cfg:
            raise ConfigError(f"{path}: --init checkpoint is a {config.get('model', {}).get('name', '?')} model with another config; this run trains {self.model_cfg.name}")
        self.net.load_state_dict(weights)
        log.info("initialised from %s", path)

    def resume(self) -> bool:
        """Continue from ``out/last`` when it exists; True when resumed."""
        last = self.out / "last"
        if not (last / "config.json").exists():
            return False
        weights, config = ckpt.load_weights(last)
        self.net.load_state_dict(weights)
        opts, rng = ckpt.load_state(last)
        self.opt_e.load_state_dict(opts["opt_e"])
        self.opt_d.load_state_dict(opts["opt_d"])
        if rng is not None:
            self.gen.set_state(rng.to(torch.uint8))
        p = config["progress"]
        self.step, self.epoch, self.best_val, self.stale_epochs = p["step"], p["epoch"], p["best_val"], p["stale_epochs"]
        log.info("resumed from %s at step %d, epoch %d", last, self.step, self.epoch)
        return True

    def fit(self, train: np.ndarray | torch.Tensor, val: np.ndarray | torch.Tensor, *, resume: bool = True) -> dict[str, Any]:
        """Train on (N, 1, H, W) images in [0, 1]; returns a summary."""
        cfg = self.cfg
        if resume:
            self.resume()
        train_t = torch.as_tensor(np.asarray(train), dtype=torch.float32).to(self.device)
        val_t = torch.as_tensor(np.asarray(val), dtype=torch.float32)
        n = train_t.shape[0]
        steps_per_epoch = max(1, n // cfg.batch_size)
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        t0 = time.perf_counter()
        stop_reason = "epochs"
        for c in self.callbacks:
            c.on_start(total, self.step)
        order_gen = torch.Generator().manual_seed(cfg.seed)
        while self.step < total:
            # Epoch e always sees the same order: a resumed run continues the same stream.
            order_gen.manual_seed(cfg.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(n, generator=order_gen).to(self.device)
            start = (self.step % steps_per_epoch) * cfg.batch_size
            for i in range(start, steps_per_epoch * cfg.batch_size, cfg.batch_size):
                x = train_t[perm[i : i + cfg.batch_size]]
                if cfg.augment:
                    x = augment_batch(x, self.gen)
                if self.cuda and cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                metrics = self.train_step(x)
                self.step += 1
                for c in self.callbacks:
                    c.on_step(self.step, metrics)
                if self.step % cfg.checkpoint_every == 0:
                    self._save("last")
                if not all(math.isfinite(v) for v in metrics.values()):
                    stop_reason = "non-finite loss"
                    break
                if self.step >= total:
                    break
                if cfg.max_minutes and time.perf_counter() - t0 > 60 * cfg.max_minutes:
                    stop_reason = "time budget"
                    break
            if stop_reason != "epochs":
                break
            if self.step % steps_per_epoch == 0 or self.step >= total:
                self.epoch += 1
                v = self.validate(val_t)
                improved = v < self.best_val
                if improved:
                    self.best_val = v
                    self.stale_epochs = 0
                else:
                    self.stale_epochs += 1
                for c in self.callbacks:
                    c.on_epoch(self.epoch, {"val_mse": v, "step": self.step, "seconds": time.perf_counter() - t0})
                self._save("last")
                if improved:
                    self._save("best")
                if cfg.patience and self.stale_epochs >= cfg.patience:
                    stop_reason = "early stopping"
                    break
        if stop_reason in ("time budget", "non-finite loss"):
            v = self.validate(val_t)
            for c in self.callbacks:
                c.on_epoch(self.epoch, {"val_mse": v, "step": self.step, "seconds": time.perf_counter() - t0})
            if v < self.best_val:
                self.best_val = v
                self._save("best")
            self._save("last")
        if not (self.out / "best").exists():
            self._save("best")
        summary = {"steps": self.step, "epochs": self.epoch, "best_val_mse": self.best_val, "seconds": time.perf_counter() - t0, "stopped_by": stop_reason}
        for c in self.callbacks:
            c.on_end(summary)
        return summary
