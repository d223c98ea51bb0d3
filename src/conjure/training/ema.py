"""Exponential moving average of weights, set by a half-life in images (after EDM's training loop)."""

from __future__ import annotations

import copy

import torch


class EMA:
    """Keeps an averaged copy of a module. With a half-life of H images and batch B the decay per step is
    0.5 ** (B / H); during warm-up the half-life is capped at `ramp` times the images seen so far, so the
    average is never dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, half_life_images: float, ramp: float = 0.1):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.half_life = half_life_images
        self.ramp = ramp

    @torch.no_grad()
    def update(self, model: torch.nn.Module, images_seen: int, batch: int) -> float:
        half_life = min(self.half_life, self.ramp * images_seen) if self.ramp else self.half_life
        decay = 0.5 ** (batch / max(half_life, 1e-8))
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):    # BatchNorm statistics: copied, not averaged
            b_ema.copy_(b)
        return decay
