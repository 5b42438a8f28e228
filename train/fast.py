"""The RA training step built for a GPU, with the maths of :func:`train.reference.ra_step`.

What differs is only how the work reaches the device:

- the random numbers of a step (the prior sample and the four reparameterisations) are
  drawn before the step, from the trainer's generator, in the reference's order and
  shapes, into one static buffer: the same numbers as the reference step;
- the losses never become Python floats inside the step: they go into a small device
  tensor that the loop reads every ``log_every`` steps (no host synchronisation per step);
- bf16 autocast and channels-last on CUDA (fp32 elsewhere, as the parity test needs);
- Adam runs fused on CUDA (``foreach`` on the CPU), ``capturable`` when graphs are used;
- with ``graph=True`` (CUDA only) the whole step, both backward passes and both optimiser
  updates, is captured once as a CUDA graph and replayed (torch.cuda.graphs, after a warm-up
  on a side stream, as PyTorch's "whole network capture" recipe does).

``tests/test_train.py`` holds every weight of this step equal to the reference step's in
fp32 on the CPU (and on a GPU where one exists).
"""

from __future__ import annotations

from typing import Any

import torch

from .losses import embedding_loss, frozen, kl_div, sse

#: the metrics of one step, in the order of the device tensor the step fills
METRICS = ("loss_e", "loss_d", "rec_mse", "kl", "expelbo_rec", "expelbo_fake", "emb")
#: random tensors per step, each (B, zdim): prior noise; z; rec; fake (encoder step); rec; fake (decoder step)
N_EPS = 6


def make_optimizers(net: Any, lr: float, device: torch.device, *, graph: bool = False) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The encoder's and the decoder's Adam: fused on CUDA (capturable for graphs), foreach on the CPU."""
    kw: dict[str, Any] = {"fused": True, "capturable": graph} if device.type == "cuda" else {"foreach": True}

    def rate() -> float | torch.Tensor:
        # a captured step reads the learning rate from a device tensor: a float would be baked in
        return torch.tensor(lr, device=device) if graph else lr

    return torch.optim.Adam(net.encoder.parameters(), lr=rate(), **kw), torch.optim.Adam(net.decoder.parameters(), lr=rate(), **kw)


class _CapturedStep:
    """A training step on device tensors: eager, or captured once as a CUDA graph and
    replayed. Subclasses set ``metrics``, ``n_eps`` and implement ``_step``."""

    metrics: tuple[str, ...] = ()
    n_eps = 0

    def __init__(self, net: Any, optimizers: tuple[torch.optim.Optimizer, ...], cfg: Any, *, scale: float, zdim: int, gen: torch.Generator, amp: bool, graph: bool = False):
        self.net, self.optimizers, self.cfg = net, optimizers, cfg
        self.scale, self.zdim, self.gen, self.amp = scale, zdim, gen, amp
        self.device = next(net.parameters()).device
        self.graph = graph and self.device.type == "cuda"
        self.extra_steps = 0  # warm-up steps run before a capture (they train like any step)
        self._g: Any = None
        self._static: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def draw(self, b: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """The step's random numbers: ``n_eps`` draws of (b, zdim) from the generator, one
        call each, in the order and shape the reference step makes them."""
        eps = out if out is not None else torch.empty(max(self.n_eps, 1), b, self.zdim, device=self.device)
        for k in range(self.n_eps):
            torch.randn(b, self.zdim, device=self.device, generator=self.gen, out=eps[k])
        return eps

    def _autocast(self) -> Any:
        # inside a graph capture the autocast weight cache must be off (PyTorch's CUDA graphs notes)
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda" and self.amp, cache_enabled=not self.graph)

    def _zero(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def _step(self, x: torch.Tensor, eps: torch.Tensor, metrics: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """One step on x (B, 1, H, W) on the device; returns the metrics tensor (on the device)."""
        self.net.train()
        b = x.shape[0]
        if not self.graph:
            eps = self.draw(b)
            metrics = torch.empty(len(self.metrics), device=self.device)
            self._zero()
            self._step(x, eps, metrics)
            return metrics
        if self._g is None or self._static is None or self._static[0].shape != x.shape:
            self._capture(x)
        assert self._static is not None
        sx, seps, smetrics = self._static
        sx.copy_(x)
        self.draw(b, out=seps)
        self._g.replay()
        return smetrics.clone()

    def _capture(self, x: torch.Tensor) -> None:
        """PyTorch's whole-step capture: three eager steps on a side stream (they train, and
        are counted in ``extra_steps``), gradients set to None, then one captured step; each
        replay's backward writes the gradients afresh into the graph's own buffers."""
        b = x.shape[0]
        sx = x.detach().clone()
        seps = torch.empty(max(self.n_eps, 1), b, self.zdim, device=self.device)
        smetrics = torch.empty(len(self.metrics), device=self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.draw(b, out=seps)
                self._zero()
                self._step(sx, seps, smetrics)
        torch.cuda.current_stream().wait_stream(side)
        self.extra_steps += 3
        self._zero()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            self._step(sx, seps, smetrics)
        self._g, self._static = g, (sx, seps, smetrics)


class FastRAStep(_CapturedStep):
    """The RA step (Soft-IntroVAE encoder and decoder updates with the reversed embedding
    loss) of :func:`reference.ra_step`; returns the (7,) tensor of :data:`METRICS`."""

    metrics = METRICS
    n_eps = N_EPS

    def _step(self, x: torch.Tensor, eps: torch.Tensor, metrics: torch.Tensor) -> None:
        cfg, s = self.cfg, self.scale
        E, D = self.net.encoder, self.net.decoder
        opt_e, opt_d = self.optimizers

        def rp(mu: torch.Tensor, logvar: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            return mu + e.to(mu.dtype) * torch.exp(0.5 * logvar)  # RANet.reparameterize, noise given

        noise = eps[0]
        with frozen(D), self._autocast():
            with torch.no_grad():
                fake = D(noise)
            mu, logvar, emb_x = E(x)
            z = rp(mu, logvar, eps[1])
            rec = D(z)
            loss_rec = sse(x, rec).mean()
            kl_real = kl_div(mu, logvar).mean()
            rec_mu, rec_logvar, emb_rec = E(rec.detach())
            fake_mu, fake_logvar, _ = E(fake.detach())
            rec_rec = D(rp(rec_mu, rec_logvar, eps[2]))
            rec_fake = D(rp(fake_mu, fake_logvar, eps[3]))
            elbo_rec = cfg.beta_rec * sse(rec, rec_rec) + cfg.beta_neg * kl_div(rec_mu, rec_logvar)
            elbo_fake = cfg.beta_rec * sse(fake, rec_fake) + cfg.beta_neg * kl_div(fake_mu, fake_logvar)
            expelbo_rec = torch.exp(-2 * s * elbo_rec).mean()
            expelbo_fake = torch.exp(-2 * s * elbo_fake).mean()
            l_emb = embedding_loss(emb_x, emb_rec)
            loss_e = s * (cfg.beta_rec * loss_rec + cfg.beta_kl * kl_real) + 0.25 * (expelbo_rec + expelbo_fake) + cfg.emb_weight * l_emb
            loss_e.backward()
        opt_e.step()
        with frozen(E):
            with self._autocast():
                fake = D(noise)
                rec = D(z.detach())
                loss_rec_d = sse(x, rec).mean()
                rec_mu, rec_logvar, _ = E(rec)
                fake_mu, fake_logvar, _ = E(fake)
                rec_rec = D(rp(rec_mu, rec_logvar, eps[4]).detach())
                rec_fake = D(rp(fake_mu, fake_logvar, eps[5]).detach())
                l_rr = sse(rec.detach(), rec_rec).mean()
                l_fr = sse(fake.detach(), rec_fake).mean()
                loss_d = s * (cfg.beta_rec * loss_rec_d + 0.5 * cfg.beta_kl * (kl_div(rec_mu, rec_logvar).mean() + kl_div(fake_mu, fake_logvar).mean())
                              + cfg.gamma_r * 0.5 * cfg.beta_rec * (l_rr + l_fr))
            loss_d.backward()
        opt_d.step()
        with torch.no_grad():
            vals = (loss_e, loss_d, loss_rec / x[0].numel(), kl_real, expelbo_rec, expelbo_fake, l_emb)
            metrics.copy_(torch.stack([v.detach().float() for v in vals]))


class FastBaselineStep(_CapturedStep):
    """The AE (z = mu) or VAE step of :func:`reference.baseline_step`; returns (loss,
    rec_mse, kl)."""

    metrics = ("loss", "rec_mse", "kl")

    def __init__(self, *args: Any, objective: str, **kw: Any):
        super().__init__(*args, **kw)
        self.objective = objective
        self.n_eps = 0 if objective == "ae" else 1

    def _step(self, x: torch.Tensor, eps: torch.Tensor, metrics: torch.Tensor) -> None:
        import torch.nn.functional as F

        E, D = self.net.encoder, self.net.decoder
        with self._autocast():
            mu, logvar, _ = E(x)
            if self.objective == "ae":
                rec = D(mu)
                loss = F.mse_loss(rec.float(), x.float())
                kl = torch.zeros((), device=x.device)
            else:
                rec = D(mu + eps[0].to(mu.dtype) * torch.exp(0.5 * logvar))
                kl = kl_div(mu, logvar).mean()
                loss = self.scale * (self.cfg.beta_rec * sse(x, rec).mean() + self.cfg.beta_kl * kl)
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        with torch.no_grad():
            metrics.copy_(torch.stack([loss.detach().float(), F.mse_loss(rec.detach().float(), x.float()), kl.detach().float()]))
