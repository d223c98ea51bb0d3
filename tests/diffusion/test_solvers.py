"""conjure.diffusion.solvers against diffusers 0.42.1: same timesteps, same sigmas, same trajectories.

The diffusers side is built with conjure.diffusion.samplers.make_diffusers_scheduler (which imports
diffusers; the solvers module itself must not). Every trajectory runs a deterministic fake model on both sides and
compares every intermediate sample.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import pytest
import torch

from conjure.diffusion import samplers
from conjure.diffusion.solvers import SOLVERS, make_solver

# diffusers 0.42.1 turns tensors into numpy arrays in a way numpy 2 warns about; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

NAMES = list(SOLVERS)
ATOL = 1e-5

# models/conjure-tiny/scheduler/scheduler_config.json, as saved (diffusers' private keys included)
REAL = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "trained_betas": None, "variance_type": "fixed_small", "clip_sample": False,
        "prediction_type": "v_prediction", "thresholding": False, "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0, "sample_max_value": 1.0, "timestep_spacing": "trailing", "steps_offset": 0,
        "rescale_betas_zero_snr": False, "_class_name": "DDPMScheduler", "_diffusers_version": "0.42.1"}
LINEAR = {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}
COSINE = {"beta_schedule": "squaredcos_cap_v2"}

CONFIGS = {
    "real": REAL,
    "real-epsilon": {**REAL, "prediction_type": "epsilon"},
    "real-sample": {**REAL, "prediction_type": "sample"},
    "real-leading-offset": {**REAL, "timestep_spacing": "leading", "steps_offset": 1},
    "real-linspace-epsilon": {**REAL, "timestep_spacing": "linspace", "prediction_type": "epsilon"},
    "linear-leading-clip": {**REAL, **LINEAR, "timestep_spacing": "leading", "prediction_type": "epsilon",
                            "clip_sample": True, "clip_sample_range": 0.8},
    "cosine-linspace-epsilon": {**COSINE, "timestep_spacing": "linspace", "prediction_type": "epsilon"},
    "cosine-trailing-v": {**REAL, **COSINE},
    "class-defaults": {},     # every key at the sampler's own default (ddpm/ddim clip by default)
}
STEPS = [1, 5, 7, 10, 20, 25, 50]

# options only some samplers know, each checked on the samplers it applies to
EXTRA = [
    ("ddpm", "real-1000", REAL, 1000),
    ("ddpm", "linear-1000", {**REAL, **LINEAR, "timestep_spacing": "leading", "prediction_type": "epsilon"}, 1000),
    ("ddpm", "fixed_large", {**REAL, "variance_type": "fixed_large"}, 20),
    ("ddpm", "fixed_small_log", {**REAL, "variance_type": "fixed_small_log", "prediction_type": "epsilon"}, 20),
    ("dpmpp_2m", "sigma_min", {**REAL, "final_sigmas_type": "sigma_min"}, 10),
    ("dpmpp_2m", "sigma_min-20", {**REAL, "final_sigmas_type": "sigma_min"}, 20),
    ("dpmpp_2m", "sigma_min-euler_at_final", {**REAL, "final_sigmas_type": "sigma_min", "euler_at_final": True}, 20),
    ("dpmpp_2m", "no-lower-order-final", {**REAL, "final_sigmas_type": "sigma_min", "lower_order_final": False}, 10),
    ("dpmpp_2m", "solver_type-heun", {**REAL, "solver_type": "heun"}, 20),
    ("dpmpp_2m", "cosine-leading", {**COSINE, "timestep_spacing": "leading", "prediction_type": "epsilon"}, 25),
    ("euler", "sigma_min", {**REAL, "final_sigmas_type": "sigma_min"}, 10),
    ("euler", "original_sample", {**REAL, "prediction_type": "original_sample"}, 10),
    ("heun", "clip", {**REAL, "clip_sample": True, "clip_sample_range": 0.5, "prediction_type": "epsilon"}, 10),
]


def make_sampler(name: str, config: dict):
    """diffusers' scheduler for sampler `name`, as conjure's registry builds it (the reference side)."""
    sched = samplers.make_diffusers_scheduler(name, config)
    assert type(sched).__module__.startswith("diffusers."), "the reference must be diffusers itself"
    return sched


def fake_model(x: torch.Tensor, t) -> torch.Tensor:
    """A smooth, deterministic stand-in for a U-Net: depends on the (scaled) input and the timestep."""
    s = float(t) / 1000.0
    return 0.8 * torch.tanh(x * (1.0 - 0.5 * s)) + 0.05 * math.cos(6.0 * s) - 0.1 * x.mean()


def seeded(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def step_kwargs(sched, gens) -> dict:
    """As the pipeline does: pass the generators only to a step() that takes them."""
    return {"generator": gens} if "generator" in inspect.signature(sched.step).parameters else {}


def sample(sched, steps: int) -> list[torch.Tensor]:
    """Text-to-image: every latent from the initial one to the final sample."""
    sched.set_timesteps(steps)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7)) * sched.init_noise_sigma
    kw = step_kwargs(sched, seeded(11, 12))
    out = [x]
    for t in sched.timesteps:
        x = sched.step(fake_model(sched.scale_model_input(x, t), t), t, x, **kw).prev_sample
        out.append(x)
    return out


def assert_same_schedule(ours, theirs) -> None:
    assert ours.order == theirs.order
    assert ours.timesteps.dtype == theirs.timesteps.dtype
    assert ours.timesteps.shape == theirs.timesteps.shape
    assert torch.equal(ours.timesteps.double(), theirs.timesteps.double())
    assert float(ours.init_noise_sigma) == pytest.approx(float(theirs.init_noise_sigma), rel=1e-7, abs=0)


def assert_same_trajectory(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == b.dtype, i
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL, equal_nan=True, msg=lambda m: f"step {i}: {m}")


def compare_sampling(name: str, config: dict, steps: int) -> None:
    if name == "euler_a" and config.get("prediction_type") == "sample":
        # diffusers' Euler ancestral has no "sample" prediction (it raises at the first step); we refuse upfront
        with pytest.raises(NotImplementedError, match="prediction_type"):
            make_solver(name, config)
        with pytest.raises(NotImplementedError):
            sample(make_sampler(name, config), steps)
        return
    ours, theirs = make_solver(name, config), make_sampler(name, config)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    assert_same_schedule(ours, theirs)
    assert_same_trajectory(sample(ours, steps), sample(theirs, steps))


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", NAMES)
def test_sampling_matches_diffusers(name, config, steps):
    compare_sampling(name, CONFIGS[config], steps)


@pytest.mark.parametrize("name, label, config, steps", EXTRA, ids=[f"{n}-{label}" for n, label, _, _ in EXTRA])
def test_sampler_specific_options_match_diffusers(name, label, config, steps):
    compare_sampling(name, config, steps)


def img2img(sched, steps: int, keep: int, masked: bool) -> list[torch.Tensor]:
    """The pipeline's image-to-image loop (and, with `masked`, its inpainting blend)."""
    g = torch.Generator().manual_seed(3)
    init = torch.randn(2, 4, 8, 8, generator=g)
    noise = torch.randn(2, 4, 8, 8, generator=g)
    mask = (torch.arange(8) < 4).float().reshape(1, 1, 1, 8)
    sched.set_timesteps(steps)
    start = (steps - keep) * sched.order
    timesteps = sched.timesteps[start:]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start)
    x = sched.add_noise(init, noise, timesteps[:1])
    out = [x]
    kw = step_kwargs(sched, seeded(5, 6))
    for i, t in enumerate(timesteps):
        x = sched.step(fake_model(sched.scale_model_input(x, t), t), t, x, **kw).prev_sample
        if masked:
            known = init if i == len(timesteps) - 1 else sched.add_noise(init, noise, timesteps[i + 1:i + 2])
            out.append(known)
            x = mask * x + (1 - mask) * known
        out.append(x)
    return out


@pytest.mark.parametrize("masked", [False, True], ids=["img2img", "inpaint"])
@pytest.mark.parametrize("steps, keep", [(10, 6), (25, 10), (7, 7), (5, 1), (20, 2)])
@pytest.mark.parametrize("config", ["real", "real-leading-offset", "cosine-linspace-epsilon"])
@pytest.mark.parametrize("name", NAMES)
def test_image_to_image_matches_diffusers(name, config, steps, keep, masked):
    cfg = CONFIGS[config]
    assert_same_trajectory(img2img(make_solver(name, cfg), steps, keep, masked),
                           img2img(make_sampler(name, cfg), steps, keep, masked))


@pytest.mark.parametrize("config", ["real", "real-leading-offset"])
@pytest.mark.parametrize("name", NAMES)
def test_add_noise_by_timestep_lookup_matches_diffusers(name, config):
    """Without a begin index, add_noise looks each timestep up (heun's repeated ones: the second match)."""
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    ours, theirs = make_solver(name, CONFIGS[config]), make_sampler(name, CONFIGS[config])
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    for pick in ([0], [3], [1, 4], [len(theirs.timesteps) - 1, 2]):
        ts = theirs.timesteps[pick]
        torch.testing.assert_close(ours.add_noise(x0, noise, ts), theirs.add_noise(x0, noise, ts), rtol=0, atol=ATOL)


def test_ancestral_noise_is_per_image():
    """With one generator per image, image i's trajectory does not depend on the other images' seeds."""
    for name in ("ddpm", "euler_a"):
        solver = make_solver(name, REAL)
        solver.set_timesteps(5)
        x = torch.zeros(2, 4, 8, 8)
        a = solver.step(torch.zeros_like(x), solver.timesteps[0], x, generator=seeded(1, 2)).prev_sample
        solver = make_solver(name, REAL)
        solver.set_timesteps(5)
        b = solver.step(torch.zeros_like(x), solver.timesteps[0], x, generator=seeded(1, 9)).prev_sample
        assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


@pytest.mark.parametrize("form", ["one-generator", "list-of-one", "none"])
@pytest.mark.parametrize("name", ["ddpm", "euler_a"])
def test_other_generator_forms_match_diffusers(name, form):
    """A single generator, a list of one, or none at all (the global RNG) draw as diffusers does."""
    def run(sched):
        sched.set_timesteps(5)
        x = torch.ones(3, 4, 8, 8)
        torch.manual_seed(123)
        for t in sched.timesteps[:3]:
            gen = {"one-generator": torch.Generator().manual_seed(4), "list-of-one": seeded(4), "none": None}[form]
            x = sched.step(fake_model(sched.scale_model_input(x, t), t), t, x, generator=gen).prev_sample
        return x
    assert torch.equal(run(make_solver(name, REAL)), run(make_sampler(name, REAL)))


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_diffusers_defaults(name):
    """Keys a model's config leaves out take the sampler's own default, exactly as in diffusers."""
    def public(config) -> dict:
        return {k: v for k, v in config.items() if not k.startswith("_")}

    reference = make_sampler(name, {})
    assert SOLVERS[name].DEFAULTS == public(type(reference)().config)       # the class built with no arguments
    assert make_solver(name, {}).config == public(reference.config)         # with the registry's overrides


def test_config_reads_like_diffusers():
    assert make_solver("dpmpp_2m", {**REAL, **COSINE}).config.lambda_min_clipped == -5.1
    assert make_solver("dpmpp_2m", REAL).config.lambda_min_clipped == -math.inf
    assert make_solver("ddim", REAL).config["set_alpha_to_one"] is False
    assert make_solver("heun", REAL).order == 2


def test_module_does_not_import_diffusers():
    code = ("import conjure.diffusion.solvers, sys; "
            "assert not any(m == 'diffusers' or m.startswith('diffusers.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name, option, value", [
    ("dpmpp_2m", "use_karras_sigmas", True),
    ("euler", "use_karras_sigmas", True),
    ("heun", "use_karras_sigmas", True),
    ("euler", "use_exponential_sigmas", True),
    ("dpmpp_2m", "use_lu_lambdas", True),
    ("ddpm", "thresholding", True),
    ("ddim", "thresholding", True),
    ("dpmpp_2m", "thresholding", True),
    ("ddpm", "rescale_betas_zero_snr", True),
    ("ddim", "rescale_betas_zero_snr", True),
    ("euler_a", "rescale_betas_zero_snr", True),
    ("euler", "trained_betas", [0.01] * 1000),
    ("ddpm", "beta_schedule", "sigmoid"),
    ("heun", "beta_schedule", "exp"),
    ("ddpm", "variance_type", "learned_range"),
    ("dpmpp_2m", "variance_type", "learned"),
    ("dpmpp_2m", "prediction_type", "flow_prediction"),
    ("euler", "interpolation_type", "log_linear"),
])
def test_unimplemented_options_raise(name, option, value):
    with pytest.raises(NotImplementedError, match=option):
        make_solver(name, {**REAL, option: value})


@pytest.mark.parametrize("name, option", [("heun", "thresholding"), ("heun", "rescale_betas_zero_snr"),
                                          ("ddpm", "use_karras_sigmas"), ("euler", "thresholding")])
def test_options_a_sampler_does_not_know_are_ignored(name, option):
    """diffusers ignores config keys a scheduler class does not take; so do we."""
    config = {**REAL, option: True}
    compare_sampling(name, config, 5)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as e:
        make_solver("plms", REAL)
    assert "unknown scheduler 'plms'" in str(e.value)
    assert all(name in str(e.value) for name in SOLVERS)
