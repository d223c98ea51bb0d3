"""Sampler registry over diffusers' schedulers; every sampler is built from the model's own config."""

from __future__ import annotations

from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# name -> (scheduler class, overrides applied on top of the model's saved scheduler config)
SAMPLERS: dict[str, tuple[type, dict]] = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {"set_alpha_to_one": False}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
}
DEFAULT_SAMPLER = "dpmpp_2m"


def make_sampler(name: str, model_scheduler_config: dict) -> SchedulerMixin:
    """A fresh scheduler `name` on the noise schedule the model was trained with."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown scheduler '{name}'; choose from: {', '.join(SAMPLERS)}")
    cls, overrides = SAMPLERS[name]
    cfg = {k: v for k, v in dict(model_scheduler_config).items() if not k.startswith("_")}
    # Diffusers' DPM-Solver on a cosine schedule saturates unless lambda is clipped (see its docs).
    if cls is DPMSolverMultistepScheduler and cfg.get("beta_schedule") == "squaredcos_cap_v2":
        overrides = {**overrides, "lambda_min_clipped": -5.1}
    return cls.from_config({**cfg, **overrides})
