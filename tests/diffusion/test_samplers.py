"""Contract shared by every sampler: built from the model's own schedule, same call signature, both for
conjure's own samplers (`make_sampler`) and diffusers' (`make_diffusers_scheduler`, for diffusers folders).
That the two give the same numbers is tests/diffusion/test_solvers.py's job."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from conjure.diffusion.samplers import DEFAULT_SAMPLER, SAMPLERS, make_diffusers_scheduler, make_sampler
from conjure.diffusion.schedule import training_scheduler

BUILDERS = {"conjure": make_sampler, "diffusers": make_diffusers_scheduler}


@pytest.fixture(scope="module")
def model_config() -> dict:
    return dict(training_scheduler().config)


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_is_built_on_the_model_schedule(name, builder, model_config):
    cls, overrides = SAMPLERS[name]
    sched = BUILDERS[builder](name, model_config)
    assert (type(sched).__name__ == cls) == (builder == "diffusers")
    assert type(sched).__module__.startswith("conjure." if builder == "conjure" else "diffusers.")
    for key in ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type"):
        assert sched.config[key] == model_config[key], key
    for key, value in overrides.items():
        assert sched.config[key] == value
    sched.set_timesteps(10)
    ts = sched.timesteps
    assert len(ts) == 10 * sched.order - (sched.order - 1)     # heun repeats all but the first
    assert (ts[:-1] >= ts[1:]).all() and 0 <= ts.min() and ts.max() <= 999


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_steps_with_the_same_call(name, builder, model_config):
    """What the pipeline does for every sampler: scale, step with a generator list, end finite."""
    sched = BUILDERS[builder](name, model_config)
    sched.set_timesteps(4)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sched.init_noise_sigma
    kw = {"generator": gens} if "generator" in inspect.signature(sched.step).parameters else {}
    if name in ("ddpm", "euler_a"):   # the stochastic ones must take per-image generators
        assert kw
    for t in sched.timesteps:
        model_out = sched.scale_model_input(x, t) * 0.1
        x = sched.step(model_out, t, x, **kw).prev_sample
    assert x.shape == (2, 4, 8, 8) and torch.isfinite(x).all()


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_accepts_the_saved_json_config(name, builder, tmp_path, model_config):
    """A model folder stores the schedule with diffusers' private keys; those must be ignored."""
    saved = {**model_config, "_class_name": "DDPMScheduler", "_diffusers_version": "0.0.0"}
    (tmp_path / "scheduler_config.json").write_text(json.dumps(saved))
    sched = BUILDERS[builder](name, json.loads((tmp_path / "scheduler_config.json").read_text()))
    assert sched.config.prediction_type == "v_prediction"


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_dpm_solver_clips_lambda_on_a_cosine_schedule(builder, model_config):
    cosine = {**model_config, "beta_schedule": "squaredcos_cap_v2"}
    assert BUILDERS[builder]("dpmpp_2m", cosine).config.lambda_min_clipped == -5.1
    assert BUILDERS[builder]("dpmpp_2m", model_config).config.lambda_min_clipped != -5.1


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_unknown_sampler_lists_the_choices(builder, model_config):
    with pytest.raises(ValueError) as e:
        BUILDERS[builder]("plms", model_config)
    assert "unknown scheduler 'plms'" in str(e.value)
    assert all(name in str(e.value) for name in SAMPLERS)


def test_default_sampler_is_registered():
    assert DEFAULT_SAMPLER in SAMPLERS
    assert set(SAMPLERS) == {"ddpm", "ddim", "dpmpp_2m", "euler", "euler_a", "heun"}
