"""A small convolutional VAE for 64x64 RGB images (factor-4 latents), light enough to train on a CPU.

diffusers' AutoencoderKL trains at about 40 images/s on two CPU cores at this size; this plain
conv/residual design keeps the same interface (`encode(x).latent_dist`, `decode(z).sample`) and
on-disk format (config.json + safetensors through ModelMixin) at several times the speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


@dataclass
class VAEConfig:
    channels: tuple[int, ...] = (32, 64, 128)   # width at full, 1/2 and 1/4 resolution
    latent_channels: int = 4                    # C of the (B, C, H/4, W/4) latent
    scaling_factor: float = 1.0                  # multiplies latents so that they have unit std


VAE_PRESETS = {
    "tiny": VAEConfig(channels=(32, 64, 128)),
    "test": VAEConfig(channels=(8, 16, 16)),
}


class _Res(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block = nn.Sequential(nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _Output:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class TinyVAE(ModelMixin, ConfigMixin):
    """Encoder (B, 3, H, W) -> posterior over (B, C, H/4, W/4); decoder back to (B, 3, H, W) in [-1, 1]."""

    @register_to_config
    def __init__(
        self,
        channels: tuple[int, ...] = (32, 64, 128),   # widths at full, 1/2, 1/4 resolution
        latent_channels: int = 4,                    # latent C
        scaling_factor: float = 1.0,                 # latent scale for diffusion (set after training)
        sample_size: int = 64,                       # native image size in pixels
    ):
        super().__init__()
        c0, c1, c2 = channels
        # Space-to-depth instead of full-resolution convolutions: most of the cost of a conv VAE at
        # 64x64 is its first and last layer, and a 2x2 pixel (un)shuffle removes them.
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(12, c1, 3, padding=1), _Res(c1),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), _Res(c2), _Res(c2),
            nn.SiLU(), nn.Conv2d(c2, 2 * latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, c2, 3, padding=1), _Res(c2), _Res(c2),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c2, c1, 3, padding=1), _Res(c1),
            nn.SiLU(), nn.Conv2d(c1, 4 * c0, 3, padding=1), nn.PixelShuffle(2), nn.SiLU(),
            nn.Conv2d(c0, 3, 3, padding=1),
        )
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                nn.init.zeros_(m.bias)
        for m in self.modules():   # residual branches start as identity
            if isinstance(m, _Res):
                nn.init.zeros_(m.block[-1].weight)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """(B, 3, H, W) in [-1, 1] -> .latent_dist over (B, C, H/4, W/4), before scaling_factor."""
        moments = self.encoder(x)
        dist = DiagonalGaussianDistribution(moments.float())
        return _Output(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """(B, C, h, w) unscaled latent -> .sample (B, 3, 4h, 4w)."""
        out = self.decoder(z)
        return _Output(sample=out) if return_dict else (out,)

    def forward(self, x: torch.Tensor, sample_posterior: bool = True):
        dist = self.encode(x).latent_dist
        z = dist.sample() if sample_posterior else dist.mode()
        return self.decode(z.to(x.dtype)).sample, dist
