"""The reference training steps: the plain transcription of the paper's code that every
faster step (train/fast.py) must equal, kept apart from the training loop (trainer.py).

Each takes the trainer (its network, optimisers, generator, config and loss scale; typed
Any, as this module sits below trainer.py) and one batch x (B, 1, H, W), updates the
weights and returns the loss terms as floats.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .losses import embedding_loss, frozen, kl_div, sse


def baseline_step(self: Any, x: torch.Tensor) -> dict[str, float]:
    """The AE (z = mu) or VAE step (``self``: the trainer: its net, optimisers, generator)."""
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

def ra_step(self: Any, x: torch.Tensor) -> dict[str, float]:
    """One Soft-IntroVAE encoder step and decoder step with RA's reversed embedding loss."""
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
