"""A user's own diffusers folder (here a random tiny Stable Diffusion) behind conjure's request type."""

from __future__ import annotations

import numpy as np
import pytest

from conjure.pipelines import load_pipeline
from conjure.pipelines.diffusers_folder import DiffusersFolderPipeline
from conjure.pipelines.registry import add_model
from conjure.pipelines.request import GenerationRequest, RequestError


@pytest.fixture(scope="module")
def sd(tiny_sd_dir) -> DiffusersFolderPipeline:
    return DiffusersFolderPipeline(tiny_sd_dir, name="sd-tiny")


def test_sizes_come_from_the_unet_and_vae(sd):
    assert sd.native_size == 64                 # 8x8 latents, VAE scale factor 8
    assert sd.sizes == [64, 128]
    req = sd.check(GenerationRequest("a red apple"))
    assert (req.steps, req.guidance, req.scheduler, req.size) == (25, 7.5, "dpmpp_2m", 64)


def test_generates_n_images_with_seed_plus_i(sd):
    result = sd(GenerationRequest("a red apple", n=2, seed=1, steps=2, size=64))
    assert [im.size for im in result.images] == [(64, 64), (64, 64)]
    assert result.seeds == [1, 2] and result.model == "sd-tiny" and len(result.model_hash) == 16
    again = sd(GenerationRequest("a red apple", n=2, seed=1, steps=2, size=64))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(result.images, again.images))
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(result.images[1]))


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "heun"])
def test_conjure_schedulers_run_on_the_folder_schedule(sd, scheduler):
    calls = []
    result = sd(GenerationRequest("red", steps=2, size=64, scheduler=scheduler),
                progress=lambda i, total: calls.append(i))
    assert result.images[0].size == (64, 64)
    if scheduler == "heun":   # diffusers calls back per model evaluation: 2 * steps - 1 for Heun
        assert calls == [1, 2, 3]
    else:
        assert calls == [1, 2]
    assert sd.pipe.scheduler.config.prediction_type == "epsilon"   # the folder's own parameterisation


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "steps must be between 1"),
    ({"size": 96}, "size 96 is not supported by this model; choose from: 64, 128"),
    ({"prompt": ""}, "the prompt is empty"),
])
def test_bad_requests_are_refused(sd, changes, message):
    with pytest.raises(RequestError, match=message):
        sd.check(GenerationRequest(**{"prompt": "red", **changes}))


def test_load_pipeline_picks_the_diffusers_wrapper_for_an_added_folder(tiny_sd_dir, settings):
    add_model(tiny_sd_dir, "sd-tiny-registered", settings=settings)
    pipe = load_pipeline("sd-tiny-registered")
    assert isinstance(pipe, DiffusersFolderPipeline) and pipe.name == "sd-tiny-registered"
