"""Controlled degradations of uint8 image sets (B, 3, H, W) for metric sanity checks: every metric must
judge these worse than the images they came from."""

from __future__ import annotations

import torch


def blur(x: torch.Tensor, k: int = 7) -> torch.Tensor:
    """A k x k box blur."""
    f = torch.nn.functional.avg_pool2d(x.float(), k, stride=1, padding=k // 2, count_include_pad=False)
    return f.round().clamp(0, 255).to(torch.uint8)


def noise(x: torch.Tensor, sigma: float = 60.0, seed: int = 0) -> torch.Tensor:
    """Additive Gaussian noise of `sigma` grey levels."""
    g = torch.Generator().manual_seed(seed)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def shift(x: torch.Tensor, px: int = 16) -> torch.Tensor:
    """Move the content `px` pixels right and down, filling with white."""
    return torch.nn.functional.pad(x, (px, 0, px, 0), value=255)[:, :, :-px, :-px].contiguous()


DEGRADATIONS = {"blur": blur, "noise": noise, "shift": shift}
