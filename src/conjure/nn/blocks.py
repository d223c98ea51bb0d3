"""Shared blocks: the conditioning adapter every lab family uses, a timestep embedding, a residual block
with an embedding input, and self-attention over a feature map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TEXT_DIM = 384   # pooled MiniLM vector


class CondAdapter(nn.Module):
    """The one conditioning path of the lab: pooled MiniLM vector (B, 384) -> (B, D). Rows where `drop` is
    True get a learned null vector instead (prompt dropout, and the unconditional branch of guidance)."""

    def __init__(self,
                 dim: int,                   # output width D
                 in_dim: int = TEXT_DIM):    # pooled text width
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, text: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        out = self.mlp(text)                                                  # (B, D)
        if drop is not None:
            out = torch.where(drop[:, None], self.null.to(out.dtype).expand_as(out), out)
        return out


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps (any real scale, e.g. 0..999) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                                   # (B, half)
    return torch.cat([args.cos(), args.sin()], dim=1)


def _groups(ch: int) -> int:
    return min(8, ch) if ch % 8 == 0 else 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding added as a per-channel shift in between, with a skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a skip."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.norm, self.heads = nn.GroupNorm(_groups(ch), ch), heads
        self.qkv, self.out = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).contiguous().unbind(1)                 # (B, heads, HW, C/heads)
        a = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1) @ v
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))          # (B, C, H, W)
