"""A small U-Net for the model-family lab: pixel DDPM, flow matching and latent diffusion share it.

Input (B, C, H, W), a real-valued time (B,) and a conditioning vector (B, D) from the lab's CondAdapter;
output (B, C, H, W). Sizes that the down-sampling does not divide are padded, then cropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from conjure.nn.blocks import CondAdapter, ResBlock, SelfAttention2d, timestep_embedding


@dataclass
class SmallUNetConfig:
    in_channels: int = 1                                   # 1 = grey pixels, 4 = autoencoder latents
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])   # one level per width; halves H, W
    emb_dim: int = 128                                     # time + condition embedding width
    attention: bool = True                                 # self-attention at the lowest resolution
    time_scale: float = 1.0                                # t is multiplied by this before the embedding
    patch: int = 1                                         # space-to-depth factor of the stem (2: 28x28x1 -> 14x14x4)


SMALL_UNET_PRESETS = {
    # Pixel space with a 2x2 space-to-depth stem: the network still sees every pixel, at a cost the 2-core
    # CPU can train (convolutions at 28x28 with few channels run at a fifth of the FLOP rate of these).
    "pixel": SmallUNetConfig(widths=[32, 64, 96], patch=2),                      # 1.26M parameters, 84 MFLOP
    "latent": SmallUNetConfig(in_channels=4, widths=[64, 96]),                   # 1.20M, 54 MFLOP on 7x7x4
    "test": SmallUNetConfig(widths=[8, 16], emb_dim=16, patch=2),
}


class SmallUNet(nn.Module):
    def __init__(self, config: SmallUNetConfig):
        super().__init__()
        self.config = c = config
        self.cond = CondAdapter(c.emb_dim)
        self.time = nn.Sequential(nn.Linear(c.emb_dim, c.emb_dim), nn.SiLU(), nn.Linear(c.emb_dim, c.emb_dim))
        self.stem = nn.Sequential(nn.PixelUnshuffle(c.patch), nn.Conv2d(c.in_channels * c.patch ** 2, c.widths[0], 3, padding=1))
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = c.widths[0]
        for i, w in enumerate(c.widths):
            self.down.append(ResBlock(prev, w, c.emb_dim))
            prev = w
            if i < len(c.widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.mid1 = ResBlock(prev, prev, c.emb_dim)
        self.attn = SelfAttention2d(prev) if c.attention else nn.Identity()
        self.mid2 = ResBlock(prev, prev, c.emb_dim)
        self.up = nn.ModuleList()
        for w in reversed(c.widths):
            self.up.append(ResBlock(prev + w, w, c.emb_dim))
            prev = w
        self.out = nn.Sequential(nn.GroupNorm(min(8, prev), prev), nn.SiLU(),
                                 nn.Conv2d(prev, c.in_channels * c.patch ** 2, 3, padding=1), nn.PixelShuffle(c.patch))
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.zeros_(self.out[-2].weight)        # start as the zero predictor: a stable first step
        nn.init.zeros_(self.out[-2].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), t (B,), text = pooled MiniLM (B, 384), drop (B,) bool -> (B, C, H, W)."""
        h0, w0 = x.shape[-2:]
        m = self.config.patch * 2 ** (len(self.config.widths) - 1)
        ph, pw = (-h0) % m, (-w0) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        emb = self.time(timestep_embedding(t * self.config.time_scale, self.config.emb_dim)) + self.cond(text, drop)
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for block in self.up:
            s = skips.pop()
            if h.shape[-1] != s.shape[-1]:
                h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
            h = block(torch.cat([h, s], 1), emb)
        return self.out(h)[..., :h0, :w0]
