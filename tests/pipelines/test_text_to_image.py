"""TextToImagePipeline on a random tiny model: every sampler, seeds, guidance, image-to-image, inpainting,
and save -> load -> identical output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conjure.diffusion.samplers import SAMPLERS
from conjure.pipelines.components import Components, load_components, save_components
from conjure.pipelines.request import GenerationRequest, RequestError
from conjure.pipelines.text_to_image import TextToImagePipeline, to_latent_input

STEPS = 3


@pytest.fixture(scope="module")
def pipe(tiny_model_dir) -> TextToImagePipeline:
    return TextToImagePipeline.from_folder(tiny_model_dir)


@pytest.fixture(scope="module")
def init_image() -> Image.Image:
    """A smooth 64x64 gradient (the tiny VAE is random, so smooth content round-trips best)."""
    yy, xx = np.mgrid[0:64, 0:64]
    return Image.fromarray(np.stack([xx * 4, yy * 4, 255 - xx * 2], axis=-1).astype(np.uint8))


def _req(**kw) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red apple", "steps": STEPS, "size": 64, "seed": 0, **kw})


def _arrays(result) -> list[np.ndarray]:
    return [np.asarray(im, dtype=np.int16) for im in result.images]


def _vae_round_trip(pipe, image: Image.Image) -> np.ndarray:
    """What the pipeline's own VAE makes of an image at the 64 px base size, as uint8 (H, W, 3)."""
    with torch.no_grad():
        x = to_latent_input(image, pipe.spec.base_size)
        y = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample
    return ((y.clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).numpy().astype(np.int16)


@pytest.mark.parametrize("scheduler", list(SAMPLERS))
def test_every_scheduler_makes_n_images_of_the_requested_size(pipe, scheduler):
    calls = []
    result = pipe(_req(n=2, seed=5, size=128, scheduler=scheduler), progress=lambda i, total: calls.append((i, total)))
    assert len(result.images) == 2 and result.seeds == [5, 6]
    assert all(im.size == (128, 128) and im.mode == "RGB" for im in result.images)
    assert not np.array_equal(*_arrays(result))               # two different seeds, two images
    total = 2 * STEPS - 1 if scheduler == "heun" else STEPS         # heun: 2 evals a step but the first
    assert calls == [(i, total) for i in range(1, total + 1)]
    assert result.request.scheduler == scheduler and result.model == "test-tiny"
    assert len(result.model_hash) == 16


@pytest.mark.parametrize("scheduler", list(SAMPLERS))
def test_same_request_gives_bit_identical_images(pipe, scheduler):
    a = _arrays(pipe(_req(n=2, seed=11, scheduler=scheduler)))
    b = _arrays(pipe(_req(n=2, seed=11, scheduler=scheduler)))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("scheduler", ["dpmpp_2m", "euler_a", "ddpm"])
def test_image_i_of_a_batch_equals_a_single_image_with_seed_plus_i(pipe, scheduler):
    """Image i depends on seed + i, not on the batch it was made in (stochastic samplers included)."""
    batch = _arrays(pipe(_req(n=3, seed=40, scheduler=scheduler)))
    for i in range(3):
        (single,) = _arrays(pipe(_req(n=1, seed=40 + i, scheduler=scheduler)))
        # The fp32 graph may pick other kernels for another batch size (last-bit float differences);
        # what is promised bit for bit is the same request at the same batch size (test above).
        assert np.abs(batch[i].astype(int) - single.astype(int)).max() <= 2, f"image {i}"


def test_different_seeds_give_different_images(pipe):
    (a,), (b,) = _arrays(pipe(_req(seed=1))), _arrays(pipe(_req(seed=2)))
    assert np.abs(a - b).mean() > 1


def test_defaults_come_from_the_model_spec(pipe):
    req = pipe.check(GenerationRequest("a red apple"))
    spec = pipe.spec
    assert (req.steps, req.guidance, req.scheduler, req.size) == \
           (spec.default_steps, spec.default_guidance, spec.default_scheduler, spec.default_size)


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "steps must be between 1"),     # 0 is refused, not replaced by the default
    ({"size": 0}, "size 0 is not supported"),
    ({"prompt": "apple " * 80}, "the prompt has 82 tokens"),   # counted by the model's own tokenizer
    ({"scheduler": "plms"}, "unknown scheduler"),
])
def test_bad_requests_are_refused_before_sampling(pipe, changes, message):
    with pytest.raises(RequestError, match=message):
        pipe(_req(**changes), progress=lambda i, total: pytest.fail("sampling started"))


def test_negative_prompt_changes_the_output(pipe):
    (plain,) = _arrays(pipe(_req(seed=3, guidance=5.0)))
    (negative,) = _arrays(pipe(_req(seed=3, guidance=5.0, negative_prompt="blurry, dark")))
    assert np.abs(plain - negative).mean() > 0.5


def test_guidance_one_runs_the_conditional_branch_only(pipe):
    (g1,) = _arrays(pipe(_req(seed=3, guidance=1.0)))
    (g1_neg,) = _arrays(pipe(_req(seed=3, guidance=1.0, negative_prompt="blurry, dark")))
    (g5,) = _arrays(pipe(_req(seed=3, guidance=5.0)))
    assert np.array_equal(g1, g1_neg)          # no unconditional branch, so the negative prompt is unused
    assert np.abs(g1 - g5).mean() > 0.5


def test_prompt_changes_the_output(pipe):
    (apple,) = _arrays(pipe(_req(seed=3)))
    (car,) = _arrays(pipe(_req(seed=3, prompt="a blue car")))
    assert np.abs(apple - car).mean() > 0.5


def test_image_to_image_strength_sets_how_much_is_repainted(pipe, init_image):
    expected = _vae_round_trip(pipe, init_image)
    results = {s: _arrays(pipe(_req(steps=10, init_image=init_image, strength=s)))[0] for s in (1.0, 0.6, 0.3)}
    assert results[1.0].shape == (64, 64, 3)
    assert np.abs(results[1.0] - results[0.3]).mean() > 2
    dist = {s: np.abs(r - expected).mean() for s, r in results.items()}
    assert dist[0.3] < dist[0.6] < dist[1.0], dist   # less strength stays closer to the init image
    result = pipe(_req(steps=10, init_image=init_image, strength=0.3))
    assert result.request.task == "image_to_image"


def test_image_to_image_accepts_any_init_size(pipe, init_image):
    result = pipe(_req(size=128, init_image=init_image.resize((300, 200)), strength=0.5))
    assert result.images[0].size == (128, 128)


def test_strength_too_low_for_the_steps_is_a_request_error(pipe, init_image):
    with pytest.raises(RequestError, match="repaints nothing"):
        pipe(_req(steps=3, init_image=init_image, strength=0.1))


@pytest.mark.parametrize("scheduler", list(SAMPLERS))
def test_inpainting_keeps_the_unmasked_region(pipe, init_image, scheduler):
    """Far from the mask the output is the VAE round trip of the init image (at the 64 px base size)."""
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :24] = 255                                      # repaint the left 24 columns
    out = _arrays(pipe(_req(n=2, scheduler=scheduler, init_image=init_image, mask=Image.fromarray(mask),
                            strength=0.8)))
    expected = _vae_round_trip(pipe, init_image)
    for image in out:
        diff = np.abs(image - expected)
        assert diff[:, 40:].max() <= 2                      # 16 px margin: the decoder's receptive field
        assert diff[:, :16].mean() > 5                      # the masked region was repainted


def test_inpainting_at_the_delivered_size(pipe, init_image):
    mask = np.zeros((256, 256), np.uint8)
    mask[:, :96] = 255
    result = pipe(_req(size=256, init_image=init_image.resize((256, 256)), mask=Image.fromarray(mask)))
    assert result.images[0].size == (256, 256) and result.request.task == "inpaint"
    small = np.asarray(result.images[0].resize((64, 64), Image.LANCZOS), dtype=np.int16)
    assert np.abs(small - _vae_round_trip(pipe, init_image))[:, 40:].mean() < 4


def test_mask_of_the_wrong_size_is_a_request_error(pipe, init_image):
    with pytest.raises(RequestError, match="the mask is 32x32 but the init image is 64x64"):
        pipe(_req(init_image=init_image, mask=Image.new("L", (32, 32), 255)))


def test_transparent_init_images_are_composited_on_white():
    clear = to_latent_input(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), 64)
    assert clear.shape == (1, 3, 64, 64)
    torch.testing.assert_close(clear, torch.ones_like(clear))


def test_save_load_round_trip_gives_identical_output(pipe, tiny_model_dir, tmp_path):
    components = load_components(tiny_model_dir)
    copy = save_components(Components(components.unet, components.vae, components.scheduler_config,
                                      components.spec), tmp_path / "copy")
    reloaded = TextToImagePipeline.from_folder(copy)
    for req in (_req(n=2, seed=9), _req(seed=9, scheduler="euler_a", guidance=3.0, negative_prompt="dark")):
        a, b = _arrays(pipe(req)), _arrays(reloaded(req))
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert reloaded.components.model_hash == pipe.components.model_hash


def test_fp32_and_bf16_agree_roughly(tiny_model_dir, pipe):
    fp32 = TextToImagePipeline.from_folder(tiny_model_dir, precision="fp32")
    (a,), (b,) = _arrays(pipe(_req(seed=4))), _arrays(fp32(_req(seed=4)))
    assert np.abs(a - b).mean() < 4


def test_unknown_precision_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="precision must be 'bf16' or 'fp32'"):
        TextToImagePipeline(load_components(tiny_model_dir), precision="fp16")
