"""The training configuration: one frozen dataclass, written beside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ra_sdk.errors import ConfigError

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
