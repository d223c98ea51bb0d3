"""Classifier-free guidance (Ho & Salimans 2022); the negative prompt takes the unconditional branch."""

from __future__ import annotations

import torch


def cfg_combine(pred_uncond: torch.Tensor, pred_cond: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """uncond + scale * (cond - uncond); `scale` may be per-sample (B,) for batched requests."""
    if isinstance(scale, torch.Tensor):
        scale = scale.view(-1, *([1] * (pred_cond.dim() - 1))).to(pred_cond.dtype)
    return pred_uncond + scale * (pred_cond - pred_uncond)
