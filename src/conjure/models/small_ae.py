"""Autoencoders that give the lab's two-stage families their latents: a KL-regularised autoencoder
(latent diffusion, after Rombach et al. 2022) and a VQ-VAE (van den Oord et al. 2017) whose 7x7 code
grid the autoregressive transformer models. Both map 28x28 grey images to 7x7 (a factor of 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SmallAEConfig:
    latent_channels: int = 4        # KL autoencoder: latent C; VQ-VAE: code vector width
    width: int = 32                 # channels at 14x14 (doubled at 7x7)
    codebook_size: int = 0          # 0 = continuous KL latents; K > 0 = VQ-VAE with K codes
    kl_weight: float = 1e-4         # KL autoencoder only
    commitment: float = 0.25        # VQ-VAE only


SMALL_AE_PRESETS = {
    "kl": SmallAEConfig(),
    "vq": SmallAEConfig(latent_channels=32, width=32, codebook_size=256),
    "test-kl": SmallAEConfig(width=8),
    "test-vq": SmallAEConfig(latent_channels=8, width=8, codebook_size=16),
}


def _encoder(w: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, w, 4, stride=2, padding=1), nn.SiLU(),               # (B, w, 14, 14)
                         nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),           # (B, 2w, 7, 7)
                         nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(), nn.Conv2d(2 * w, out, 1))


def _decoder(w: int, cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, 2 * w, 3, padding=1), nn.SiLU(),
                         nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.SiLU(),  # (B, w, 14, 14)
                         nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), nn.SiLU(),      # (B, w, 28, 28)
                         nn.Conv2d(w, 1, 3, padding=1))


class SmallAE(nn.Module):
    """encode: (B, 1, 28, 28) -> latents (B, C, 7, 7) (KL) or code indices (B, 7, 7) (VQ); decode inverts."""

    def __init__(self, c: SmallAEConfig):
        super().__init__()
        self.config = c
        vq = c.codebook_size > 0
        self.enc = _encoder(c.width, c.latent_channels if vq else 2 * c.latent_channels)
        self.dec = _decoder(c.width, c.latent_channels)
        if vq:
            self.codebook = nn.Parameter(torch.randn(c.codebook_size, c.latent_channels) * 0.1)
        self.register_buffer("latent_scale", torch.ones(()))   # set once by latent diffusion: unit-variance latents

    @property
    def is_vq(self) -> bool:
        return self.config.codebook_size > 0

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, 7, 7) -> nearest code indices (B, 7, 7)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])                               # (B*49, C)
        return torch.cdist(flat, self.codebook).argmin(1).view(z.shape[0], *z.shape[2:])

    def embed_codes(self, idx: torch.Tensor) -> torch.Tensor:
        return self.codebook[idx].permute(0, 3, 1, 2)                                      # (B, C, 7, 7)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        return self.quantize(h) if self.is_vq else h.chunk(2, dim=1)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latents (B, C, 7, 7), or code indices (B, 7, 7) for a VQ-VAE -> images (B, 1, 28, 28) in [-1, 1]."""
        if self.is_vq and z.dtype == torch.long:
            z = self.embed_codes(z)
        return self.dec(z).tanh()

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        h = self.enc(x)
        if self.is_vq:
            idx = self.quantize(h)
            e = self.embed_codes(idx)
            codebook = F.mse_loss(e, h.detach()) + self.config.commitment * F.mse_loss(h, e.detach())
            z = h + (e - h).detach()                                   # straight-through estimator
            rec = F.mse_loss(self.decode(z), x)
            usage = idx.unique().numel() / self.config.codebook_size
            return rec + codebook, {"rec": float(rec), "codebook": float(codebook), "code_usage": usage}
        mu, logvar = h.chunk(2, dim=1)
        logvar = logvar.clamp(-12, 8)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        rec = F.mse_loss(self.decode(z), x)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean()
        return rec + self.config.kl_weight * kl, {"rec": float(rec), "kl": float(kl)}

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor) -> int:
        """Move codes no image of the batch uses onto random encoder outputs (keeps the codebook alive)."""
        h = self.enc(x)
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        used = torch.zeros(self.config.codebook_size, dtype=torch.bool)
        used[self.quantize(h).flatten().unique()] = True
        dead = (~used).nonzero().flatten()
        if len(dead):
            self.codebook.data[dead] = flat[torch.randint(len(flat), (len(dead),))]
        return len(dead)
