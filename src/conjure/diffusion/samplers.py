"""The sampler registry: names, conjure's own samplers (`make_sampler`) and diffusers' (`make_diffusers_scheduler`),
both built from a model's own saved scheduler config.

conjure's pipeline samples with conjure.diffusion.solvers, which reproduces diffusers 0.42.1's schedulers
(tests/diffusion/test_solvers.py compares every step) without importing diffusers, whose import costs seconds
of every cold start. A diffusers-format model a user brings is driven by diffusers itself, so it gets
diffusers' schedulers. Importing this module imports neither.
"""

from __future__ import annotations

from typing import Any

# name -> (diffusers scheduler class, overrides applied on top of the model's saved scheduler config)
SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {"set_alpha_to_one": False}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
DEFAULT_SAMPLER = "dpmpp_2m"


def sampler_config(name: str, model_scheduler_config: dict) -> tuple[str, dict]:
    """(diffusers class name, config) of sampler `name` on the noise schedule the model was trained with."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown scheduler '{name}'; choose from: {', '.join(SAMPLERS)}")
    cls, overrides = SAMPLERS[name]
    cfg = {k: v for k, v in dict(model_scheduler_config).items() if not k.startswith("_")}
    # Diffusers' DPM-Solver on a cosine schedule saturates unless lambda is clipped (see its docs).
    if cls == "DPMSolverMultistepScheduler" and cfg.get("beta_schedule") == "squaredcos_cap_v2":
        overrides = {**overrides, "lambda_min_clipped": -5.1}
    return cls, {**cfg, **overrides}


def make_diffusers_scheduler(name: str, model_scheduler_config: dict) -> Any:
    """A fresh diffusers scheduler for sampler `name` on the model's noise schedule."""
    import diffusers
    cls, cfg = sampler_config(name, model_scheduler_config)
    return getattr(diffusers, cls).from_config(cfg)


def make_sampler(name: str, model_scheduler_config: dict):
    """conjure's sampler `name` on the noise schedule the model was trained with (no diffusers import)."""
    from conjure.diffusion.solvers import make_solver
    return make_solver(name, model_scheduler_config)
