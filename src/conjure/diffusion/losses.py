"""Diffusion training targets. Parameterisations enter through one table, not if-chains in the loop."""

from __future__ import annotations

import torch


def target_eps(x_0, eps, a):
    return eps


def target_v(x_0, eps, a):
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022)."""
    return a.sqrt() * eps - (1 - a).sqrt() * x_0


def target_flow(x_0, eps, a):
    """Rectified-flow velocity eps - x_0 (Liu et al. 2022)."""
    return eps - x_0


TARGETS = {"epsilon": target_eps, "v_prediction": target_v, "flow": target_flow}


def diffusion_loss(pred: torch.Tensor, x_0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor,
                   alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Mean squared error between the network output and its parameterisation's target."""
    a = alpha_bar[t].view(-1, 1, 1, 1).to(x_0.dtype)
    return torch.nn.functional.mse_loss(pred.float(), TARGETS[prediction_type](x_0, eps, a).float())
