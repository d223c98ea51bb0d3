"""The training noise schedule (DDPM, Ho et al. 2020) and the noising of x_0."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler


def training_scheduler(num_train_timesteps: int = 1000, prediction_type: str = "v_prediction") -> DDPMScheduler:
    """The schedule a model is trained on; its config is saved with the model and every sampler reuses it."""
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="scaled_linear",
                         beta_start=0.00085, beta_end=0.012, prediction_type=prediction_type,
                         clip_sample=False, timestep_spacing="trailing")


def alpha_bar(scheduler: DDPMScheduler) -> torch.Tensor:
    return scheduler.alphas_cumprod


def q_sample(x_0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alpha_bar_: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    a = alpha_bar_[t].view(-1, 1, 1, 1).to(x_0.dtype)
    return a.sqrt() * x_0 + (1 - a).sqrt() * eps
