"""The loss terms of the RA step and its baselines (DESIGN.md section 2), as plain functions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F


def sse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).sum(1)


def kl_div(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
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
