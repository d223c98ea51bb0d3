"""A DCGAN-style conditional GAN for 28x28 grey images (Radford et al. 2016), with a projection
discriminator (Miyato & Koyama 2018) and optional spectral normalisation (Miyato et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from conjure.nn.blocks import CondAdapter


@dataclass
class GANConfig:
    z_dim: int = 64                 # latent noise width
    cond_dim: int = 128             # CondAdapter output width
    g_width: int = 96               # generator channels at 7x7 (halved at 14x14 and 28x28)
    d_width: int = 32               # discriminator channels at 14x14 (doubled at 7x7)
    spectral: bool = True           # spectral normalisation on every discriminator layer


GAN_PRESETS = {
    "base": GANConfig(),            # generator 1.04M parameters, discriminator 0.10M
    "test": GANConfig(z_dim=8, cond_dim=16, g_width=16, d_width=8),
}


class Generator(nn.Module):
    """(z (B, Z), text (B, 384)) -> images (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, c: GANConfig):
        super().__init__()
        self.config, w = c, c.g_width
        self.cond = CondAdapter(c.cond_dim)
        self.fc = nn.Sequential(nn.Linear(c.z_dim + c.cond_dim, w * 49), nn.BatchNorm1d(w * 49), nn.ReLU())
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(w, w // 2, 3, padding=1), nn.BatchNorm2d(w // 2), nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(w // 2, w // 4, 3, padding=1), nn.BatchNorm2d(w // 4), nn.ReLU(),
            nn.Conv2d(w // 4, 1, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor, text: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.cond(text, drop)], 1))
        return self.net(h.view(len(z), self.config.g_width, 7, 7))           # (B, 1, 28, 28)


class Discriminator(nn.Module):
    """(images (B, 1, 28, 28), text (B, 384)) -> realness logits (B,): a linear head plus the projection
    <embed(condition), features>."""

    def __init__(self, c: GANConfig):
        super().__init__()
        sn = spectral_norm if c.spectral else (lambda m: m)
        self.config, w = c, c.d_width
        self.cond = CondAdapter(2 * w)
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),            # (B, w, 14, 14)
            sn(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),        # (B, 2w, 7, 7)
            sn(nn.Conv2d(2 * w, 2 * w, 3, padding=1)), nn.LeakyReLU(0.2))
        self.head = sn(nn.Linear(2 * w, 1))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        f = self.net(x).sum((2, 3))                                                 # (B, 2w)
        return self.head(f).squeeze(1) + (self.cond(text) * f).sum(1)
