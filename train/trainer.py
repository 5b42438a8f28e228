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
from . import reference
from .callbacks import Callback, CSVLogger
from .config import TrainConfig
from .data import augment_batch

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
        self.preset = get_preset(cfg.preset).replace(size=self.model_cfg.image_size)
        torch.manual_seed(cfg.seed)
        self.net: RANet = build(self.model_cfg).to(self.device)
        if self.cuda and cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # runtime API, not in the stubs
        if cfg.init_from:
            self._init_from(Path(cfg.init_from))
        self.step_kind = ("graph" if self.cuda else "reference") if cfg.step == "auto" else cfg.step
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.fast: Any = None
        if self.step_kind == "reference":
            self.opt_e = torch.optim.Adam(self.net.encoder.parameters(), lr=cfg.lr_at(0))
            self.opt_d = torch.optim.Adam(self.net.decoder.parameters(), lr=cfg.lr_at(0))
        else:
            from .fast import FastBaselineStep, FastRAStep, make_optimizers

            graph = self.step_kind == "graph"
            self.opt_e, self.opt_d = make_optimizers(self.net, cfg.lr_at(0), self.device, graph=graph and self.cuda)
            kw: dict[str, Any] = dict(scale=1.0 / (self.model_cfg.image_size**2), zdim=self.model_cfg.zdim, gen=self.gen, amp=cfg.amp, graph=graph)
            if cfg.objective == "ra":
                self.fast = FastRAStep(self.net, (self.opt_e, self.opt_d), cfg, **kw)
            else:
                self.fast = FastBaselineStep(self.net, (self.opt_e, self.opt_d), cfg, objective=cfg.objective, **kw)
        self.selector: Any = None
        self.callbacks = [CSVLogger(self.out), *callbacks]
        self.scale = 1.0 / (self.model_cfg.image_size**2)
        self.step = 0
        self.epoch = 0
        self.best_val = math.inf
        self.best_auroc = -math.inf
        self.stale_epochs = 0

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and self.cfg.amp)

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """One optimisation step on batch x (B, 1, H, W); returns the loss terms (floats:
        with a fast step this synchronises; the training loop reads them less often)."""
        if self.fast is not None:
            return dict(zip(self.fast.metrics, self.fast(x).tolist()))
        self.net.train()
        if self.cfg.objective == "ra":
            return self._ra_step(x)
        return self._baseline_step(x)

    def _set_lr(self) -> None:
        lr = self.cfg.lr_at(self.step)
        for opt in (self.opt_e, self.opt_d):
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr

    def _baseline_step(self, x: torch.Tensor) -> dict[str, float]:
        return reference.baseline_step(self, x)

    def _ra_step(self, x: torch.Tensor) -> dict[str, float]:
        return reference.ra_step(self, x)

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
            preset=self.preset.to_dict(),
            train_config=self.cfg.to_dict(),
            progress={"step": self.step, "epoch": self.epoch, "best_val": self.best_val, "best_auroc": self.best_auroc, "stale_epochs": self.stale_epochs, "device": str(self.device)},
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
        load_optimizer(self.opt_e, opts["opt_e"])
        load_optimizer(self.opt_d, opts["opt_d"])
        if rng is not None:
            self.gen.set_state(rng.to(torch.uint8))
        p = config["progress"]
        self.step, self.epoch, self.best_val, self.stale_epochs = p["step"], p["epoch"], p["best_val"], p["stale_epochs"]
        self.best_auroc = p.get("best_auroc", -math.inf)
        log.info("resumed from %s at step %d, epoch %d", last, self.step, self.epoch)
        return True

    def fit(self, train: np.ndarray | torch.Tensor, val: np.ndarray | torch.Tensor, *, resume: bool = True, embedded: bool = False) -> dict[str, Any]:
        """Train on (N, 1, H, W) images in [0, 1]; returns a summary.

        ``embedded``: the data is the embedded brain set, so the validation AUROC on
        synthetic anomalies can choose ``best`` (``cfg.select`` "auto"). A step whose losses
        are not finite stops the run and nothing is saved after it: ``last`` and ``best``
        stay as they were.
        """
        cfg = self.cfg
        if resume:
            self.resume()
        select = ("auroc" if embedded else "mse") if cfg.select == "auto" else cfg.select
        if select == "auroc" and self.selector is None:
            from ra_sdk.scoring import ScoreConfig

            from .selection import ValidationAUROC

            self.selector = ValidationAUROC(n_normal=cfg.val_normals, n_per_type=cfg.val_per_type, seed=cfg.seed, size=self.model_cfg.image_size, score=ScoreConfig(perceptual="features", aggregation="topk", topk=0.05, foreground=0.05))
        train_t = torch.as_tensor(np.asarray(train), dtype=torch.float32).to(self.device)  # the pool lives on the device
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
        pending: list[tuple[int, Any]] = []  # fast steps: (step, device metrics) not read yet
        timed = False

        def drain() -> bool:
            """Read the pending metrics (a host sync), report them; False on a non-finite loss."""
            ok = True
            for step, m in pending:
                values = dict(zip(self.fast.metrics, m.tolist())) if self.fast is not None else m
                for c in self.callbacks:
                    c.on_step(step, values)
                ok = ok and all(math.isfinite(v) for v in values.values())
            pending.clear()
            return ok

        while self.step < total:
            # Epoch e always sees the same order: a resumed run continues the same stream.
            order_gen.manual_seed(cfg.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(n, generator=order_gen).to(self.device)  # one copy per epoch
            start = (self.step % steps_per_epoch) * cfg.batch_size
            for i in range(start, steps_per_epoch * cfg.batch_size, cfg.batch_size):
                x = train_t[perm[i : i + cfg.batch_size]]
                if cfg.augment:
                    x = augment_batch(x, self.gen, hflip=self.preset.hflip)
                if self.cuda and cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                self._set_lr()
                pending.append((self.step + 1, self.fast(x) if self.fast is not None else self.train_step(x)))
                self.step += 1
                due_save = self.step % cfg.checkpoint_every == 0
                if (len(pending) >= cfg.log_every or due_save or self.step >= total or self.fast is None) and not drain():
                    stop_reason = "non-finite loss"
                    break
                if not timed and self.step >= 3 and self.device.type == "cpu":
                    timed = True
                    self._cpu_notice((time.perf_counter() - t0) / self.step, total)
                if due_save:
                    self._save("last")
                if self.step >= total:
                    break
                if cfg.max_minutes and time.perf_counter() - t0 > 60 * cfg.max_minutes:
                    stop_reason = "time budget"
                    break
            if stop_reason == "non-finite loss":
                break
            if not drain():
                stop_reason = "non-finite loss"
                break
            if stop_reason == "epochs" and self.step % steps_per_epoch == 0:
                self.epoch += 1  # a whole epoch; a time budget or max_steps validate mid-epoch
            if self._end_epoch(val_t, select, t0) and cfg.patience and self.stale_epochs >= cfg.patience and stop_reason == "epochs":
                stop_reason = "early stopping"
            if stop_reason != "epochs":
                break
        if stop_reason == "non-finite loss":
            log.warning("training stopped at step %d: a loss is not finite; %s and best were kept as they were", self.step, self.out / "last")
        elif not (self.out / "best").exists():
            self._save("best")
        extra = self.fast.extra_steps if self.fast is not None else 0
        summary = {"steps": self.step, "warmup_steps": extra, "images": (self.step + extra) * cfg.batch_size, "epochs": self.epoch, "best_val_mse": self.best_val, "best_val_auroc": self.best_auroc, "selected_by": select,
                   "seconds": time.perf_counter() - t0, "stopped_by": stop_reason, "step_kind": self.step_kind}
        for c in self.callbacks:
            c.on_end(summary)
        return summary

    def _end_epoch(self, val_t: torch.Tensor, select: str, t0: float) -> bool:
        """Validate, report, save ``last`` (and ``best`` when the selection metric improved).
        Returns True when the epoch did not improve."""
        v = self.validate(val_t)
        report: dict[str, float] = {"val_mse": v, "step": self.step, "seconds": time.perf_counter() - t0}
        if select == "auroc":
            auc = self.selector(self.net)
            report.update({f"val_auroc_{k}": a for k, a in auc.items()})
            improved = auc["mean"] > self.best_auroc
            if improved:
                self.best_auroc = auc["mean"]
            self.best_val = min(self.best_val, v)
        else:
            improved = v < self.best_val
            if improved:
                self.best_val = v
        self.stale_epochs = 0 if improved else self.stale_epochs + 1
        for c in self.callbacks:
            c.on_epoch(self.epoch, report)
        self._save("last")
        if improved:
            self._save("best")
        return not improved

    def _cpu_notice(self, seconds_per_step: float, total: int) -> None:
        left = max(0, total - self.step) * seconds_per_step
        budget = f"; --max-minutes {self.cfg.max_minutes:g} stops it sooner" if self.cfg.max_minutes else ""
        log.warning(
            "training on the CPU: %.2f s per step (measured over the first %d steps); the %d steps asked for would take about %s%s. "
            "The CPU is for checking a pipeline end to end; train real models on a GPU.",
            seconds_per_step, self.step, total, _duration(left + self.step * seconds_per_step), budget,
        )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    h, rem = divmod(int(seconds), 3600)
    return f"{h} h {rem // 60} min" if h else f"{rem // 60} min {rem % 60} s"


def load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``opt.load_state_dict(state)``, keeping the group values the optimiser holds as
    tensors (a captured step's learning rate: the graph reads that very tensor) as those
    tensors, filled with the loaded values."""
    live = [{k: v for k, v in g.items() if isinstance(v, torch.Tensor)} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, tensors in zip(opt.param_groups, live):
        for k, t in tensors.items():
            with torch.no_grad():
                t.fill_(float(group[k]))
            group[k] = t
