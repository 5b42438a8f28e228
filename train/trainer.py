"""The trainer: Soft-IntroVAE encoder/decoder steps with RA's multi-scale reversed
embedding loss (DESIGN.md section 2), and the AE and VAE baselines on the same backbone.

Reports go through callbacks (a CSV + JSONL log by default; a progress display is a
callback the caller adds); nothing is printed here. Checkpoints are safetensors + JSON (train/checkpoint.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
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
from .callbacks import Callback, CSVLogger
from .config import TrainConfig
from .data import augment_batch
from .losses import embedding_loss, frozen, kl_div, sse

log = logging.getLogger(__name__)


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
                kl = kl_div(mu, logvar).mean()
                loss = s * (cfg.beta_rec * sse(x, rec).mean() + cfg.beta_kl * kl)
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
        with frozen(D), self._autocast():
            with torch.no_grad():
                fake = D(noise)  # only ever used detached here
            mu, logvar, emb_x = E(x)
            z = rp(mu, logvar, self.gen)
            rec = D(z)
            loss_rec = sse(x, rec).mean()
            kl_real = kl_div(mu, logvar).mean()
            # One encoder pass over the detached reconstruction serves the introspective
            # term and the reversed embedding loss.
            rec_mu, rec_logvar, emb_rec = E(rec.detach())
            fake_mu, fake_logvar, _ = E(fake.detach())
            rec_rec = D(rp(rec_mu, rec_logvar, self.gen))
            rec_fake = D(rp(fake_mu, fake_logvar, self.gen))
            elbo_rec = cfg.beta_rec * sse(rec, rec_rec) + cfg.beta_neg * kl_div(rec_mu, rec_logvar)
            elbo_fake = cfg.beta_rec * sse(fake, rec_fake) + cfg.beta_neg * kl_div(fake_mu, fake_logvar)
            expelbo_rec = torch.exp(-2 * s * elbo_rec).mean()
            expelbo_fake = torch.exp(-2 * s * elbo_fake).mean()
            l_emb = embedding_loss(emb_x, emb_rec)
            loss_e = s * (cfg.beta_rec * loss_rec + cfg.beta_kl * kl_real) + 0.25 * (expelbo_rec + expelbo_fake) + cfg.emb_weight * l_emb
            self.opt_e.zero_grad(set_to_none=True)
            loss_e.backward()
        self.opt_e.step()

        # Decoder step (encoder frozen).
        with frozen(E):
            with self._autocast():
                fake = D(noise)
                rec = D(z.detach())
                loss_rec_d = sse(x, rec).mean()
                rec_mu, rec_logvar, _ = E(rec)
                fake_mu, fake_logvar, _ = E(fake)
                rec_rec = D(rp(rec_mu, rec_logvar, self.gen).detach())
                rec_fake = D(rp(fake_mu, fake_logvar, self.gen).detach())
                l_rr = sse(rec.detach(), rec_rec).mean()
                l_fr = sse(fake.detach(), rec_fake).mean()
                kl_rec = kl_div(rec_mu, rec_logvar).mean()
                kl_fake = kl_div(fake_mu, fake_logvar).mean()
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
