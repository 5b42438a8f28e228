"""The score configuration stored in every engine file (DESIGN.md section 3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..spec import SALIENCY_SIGMA

PERCEPTUAL_KINDS = ("structural", "features", "none")
AGGREGATIONS = ("mean", "topk", "max")


@dataclass(frozen=True)
class ScoreConfig:
    """How an anomaly map and an image score are made (stored in every engine file)."""

    #: "structural" (1 - SSIM), "features" (network features), or "none" (no saliency)
    perceptual: str = "structural"
    #: equalise both images with CLAHE before the residual and the second perceptual map
    use_clahe: bool = True
    #: Gaussian smoothing of the perceptual maps (0 turns it off)
    sigma: float = SALIENCY_SIGMA
    #: structural: Gaussian (sigma 1.5) instead of the 7x7 uniform SSIM window
    ssim_gaussian: bool = False
    #: image score: "mean" (the paper), "topk" (mean of the top ``topk`` fraction), "max"
    aggregation: str = "mean"
    topk: float = 0.01
    #: study score over slices: "max" or "topk" (mean of the ``study_k`` largest)
    study_aggregation: str = "max"
    study_k: int = 3
    #: 0: score every pixel; else only the foreground: where the input, smoothed by the
    #: saliency Gaussian, exceeds this level (the skull-stripped background of a brain MRI
    #: scores nothing); "mean" averages the foreground, "topk" and "max" count the rest as
    #: zero (k stays a fraction of the whole image)
    foreground: float = 0.0

    def __post_init__(self) -> None:
        if self.perceptual not in PERCEPTUAL_KINDS:
            raise ConfigError(f"unknown perceptual map {self.perceptual!r}; valid: {', '.join(PERCEPTUAL_KINDS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(f"unknown aggregation {self.aggregation!r}; valid: {', '.join(AGGREGATIONS)}")
        if self.study_aggregation not in ("max", "topk"):
            raise ConfigError(f"unknown study aggregation {self.study_aggregation!r}; valid: max, topk")
        if not 0 < self.topk <= 1:
            raise ConfigError(f"topk must be a fraction in (0, 1], got {self.topk}")
        if not 0 <= self.foreground < 1:
            raise ConfigError(f"foreground must be a level in [0, 1), got {self.foreground}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreConfig:
        from ..configs import check_keys

        check_keys(cls, d, "score config")
        return cls(**d)
