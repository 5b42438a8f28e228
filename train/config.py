"""The training configuration: one frozen dataclass, written beside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ra_sdk.errors import ConfigError

OBJECTIVES = ("ra", "ae", "vae")
STEPS = ("auto", "reference", "fast", "graph")
LR_RULES = ("constant", "linear", "sqrt")
SELECTION = ("auto", "auroc", "mse")


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
    #: the training step: "reference" (the plain step), "fast" (device-only, no per-step host
    #: sync, fused Adam), "graph" (fast, captured as a CUDA graph); "auto": graph on CUDA,
    #: reference elsewhere
    step: str = "auto"
    log_every: int = 50  # fast steps: read the losses (a host sync) every this many steps
    #: learning-rate rule for batches larger than ``base_batch``: lr * 1 ("constant"),
    #: * batch/base_batch ("linear"), * sqrt(batch/base_batch) ("sqrt"), after a linear
    #: warm-up over ``warmup_steps``
    lr_rule: str = "constant"
    base_batch: int = 8  # the paper code's batch size, at which ``lr`` is the paper's
    warmup_steps: int = 0
    #: which checkpoint is "best": validation AUROC on synthetic anomalies of validation
    #: normals ("auroc"; the embedded brain data only), or validation MSE ("mse"); "auto":
    #: auroc on the embedded data, mse on a user's folder
    select: str = "auto"
    val_normals: int = 64  # validation AUROC: normals, and images per pathology type
    val_per_type: int = 8

    def __post_init__(self) -> None:
        for name, value, valid in (("objective", self.objective, OBJECTIVES), ("step", self.step, STEPS), ("lr_rule", self.lr_rule, LR_RULES), ("select", self.select, SELECTION)):
            if value not in valid:
                raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}; use --max-steps or --max-minutes to train less")
        if self.batch_size < 1 or self.lr <= 0 or self.log_every < 1 or self.base_batch < 1 or self.warmup_steps < 0:
            raise ConfigError("batch size, lr, log_every and base_batch must be positive, warmup_steps not negative")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) under the rule."""
        ratio = self.batch_size / self.base_batch
        peak = self.lr * {"constant": 1.0, "linear": ratio, "sqrt": ratio**0.5}[self.lr_rule]
        if self.warmup_steps and step < self.warmup_steps:
            return peak * (step + 1) / self.warmup_steps
        return peak

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
