"""A conditional beta-VAE for 28x28 grey images (Kingma & Welling 2014; Higgins et al. 2017).

The encoder and decoder both see the condition; with prompt dropout they also work unconditionally,
which the anomaly score and latent arithmetic use."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from conjure.nn.blocks import CondAdapter


@dataclass
class BetaVAEConfig:
    latent_dim: int = 16            # z width
    cond_dim: int = 128             # CondAdapter output width
    width: int = 48                 # channels at 14x14 (doubled at 7x7)
    beta: float = 1.0               # KL weight (1 = plain VAE)


BETA_VAE_PRESETS = {"base": BetaVAEConfig(),           # 1.07M parameters
                     "test": BetaVAEConfig(latent_dim=4, cond_dim=16, width=8)}


class BetaVAE(nn.Module):
    def __init__(self, c: BetaVAEConfig):
        super().__init__()
        self.config, w = c, c.width
        self.cond = CondAdapter(c.cond_dim)
        self.enc = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1), nn.SiLU(),                       # (B, w, 14, 14)
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.SiLU(), nn.Flatten())     # (B, 2w*49)
        self.to_stats = nn.Linear(2 * w * 49 + c.cond_dim, 2 * c.latent_dim)
        self.fc = nn.Sequential(nn.Linear(c.latent_dim + c.cond_dim, 2 * w * 49), nn.SiLU())
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.SiLU(),          # (B, w, 14, 14)
            nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1), nn.SiLU(),         # (B, w/2, 28, 28)
            nn.Conv2d(w // 2, 1, 3, padding=1))

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 28, 28) in [-1, 1] -> (mu, logvar), each (B, Z)."""
        mu, logvar = self.to_stats(torch.cat([self.enc(x), cond], 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> Bernoulli logits of pixel brightness (B, 1, 28, 28)."""
        return self.dec(self.fc(torch.cat([z, cond], 1)).view(len(z), 2 * self.config.width, 7, 7))

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(z, cond).sigmoid() * 2 - 1                       # (B, 1, 28, 28) in [-1, 1]

    def neg_elbo(self, x: torch.Tensor, text: torch.Tensor, drop: torch.Tensor | None = None,
                 beta: float | None = None, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image (reconstruction nats, KL nats, loss = rec + beta * KL), each (B,)."""
        cond = self.cond(text, drop)
        mu, logvar = self.encode(x, cond)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if sample else mu
        target = (x + 1) / 2
        rec = F.binary_cross_entropy_with_logits(self.decode_logits(z, cond), target, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        return rec, kl, rec + (self.config.beta if beta is None else beta) * kl
