"""The RA network (DESIGN.md section 2): a Soft-IntroVAE-style residual encoder/decoder
whose encoder exposes its embedding after every pooling step.

Shapes for ``ra-base`` at 128x128: embeddings (B, 64, 64, 64), (B, 128, 32, 32),
(B, 256, 16, 16), (B, 512, 8, 8), (B, 512, 4, 4); mu, logvar (B, 128); x_rec (B, 1, 128, 128).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ra_sdk.configs import ModelConfig


class ResBlock(nn.Module):
    """conv3x3 - BN - LeakyReLU(0.2) - conv3x3 - BN, plus a (1x1 conv) skip, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, ch[0], 5, padding=2, bias=False),
            nn.BatchNorm2d(ch[0]),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.stages = nn.ModuleList(ResBlock(a, b) for a, b in itertools.pairwise(ch))
        self.pool = nn.AvgPool2d(2)
        self.last = ResBlock(ch[-1], ch[-1])
        self.side = cfg.image_size // 2 ** len(ch)
        if self.side < 1 or cfg.image_size % 2 ** len(ch):
            raise ValueError(f"image size {cfg.image_size} must be divisible by 2^{len(ch)}")
        self.fc = nn.Linear(ch[-1] * self.side * self.side, 2 * cfg.zdim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, H, W) -> mu (B, zdim), logvar (B, zdim), embeddings (one per scale)."""
        h = self.pool(self.stem(x))
        emb = [h]
        for stage in self.stages:
            h = self.pool(stage(h))
            emb.append(h)
        h = self.last(h)
        mu, logvar = self.fc(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar, emb


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.channels
        self.side = cfg.image_size // 2 ** len(ch)
        self.c_last = ch[-1]
        self.fc = nn.Sequential(nn.Linear(cfg.zdim, ch[-1] * self.side * self.side), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        prev = ch[-1]
        for c in reversed(ch):
            blocks += [ResBlock(prev, c), nn.Upsample(scale_factor=2, mode="nearest")]
            prev = c
        blocks += [ResBlock(prev, prev), nn.Conv2d(prev, cfg.in_channels, 5, padding=2), nn.Sigmoid()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(z.shape[0], self.c_last, self.side, self.side))


class RANet(nn.Module):
    """Encoder + decoder. ``reconstruct`` is the deterministic inference path (z = mu)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + eps * torch.exp(0.5 * logvar)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, H, W) in [0, 1] -> (x_ph = D(mu(E(x))), embeddings of x)."""
        mu, _, emb = self.encoder(x)
        return self.decoder(mu), emb

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's embeddings of x (the ``features`` perceptual network)."""
        return self.encoder(x)[2]


class ReconNet(nn.Module):
    """x -> (x_ph, embeddings of x): the ``recon`` network that is exported."""

    def __init__(self, net: RANet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, _, emb = self.net.encoder(x)
        return (self.net.decoder(mu), *emb)


class FeaturesNet(nn.Module):
    """x -> embeddings of x: the ``features`` network (the model's own perceptual network)."""

    def __init__(self, net: RANet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net.encoder(x)[2])


def network_module(net: RANet, network: str) -> nn.Module:
    """The exported/served module for ``network``: "recon" or "features" (eval mode)."""
    if network not in ("recon", "features"):
        raise ValueError(f"unknown network {network!r}; valid: recon, features")
    return (ReconNet(net) if network == "recon" else FeaturesNet(net)).eval()


def build(cfg: ModelConfig) -> RANet:
    return RANet(cfg)
