"""GenerationRequest and check_request: every refusal says what to change."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from conjure.pipelines.request import (MAX_N, MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, MAX_SEED, MAX_STEPS,
                                       GenerationRequest, RequestError, check_request, mask_array)

SIZES = [64, 128, 256]


def _ok(**kw) -> GenerationRequest:
    base = dict(prompt="a red apple", n=2, seed=3, steps=10, guidance=5.0, scheduler="ddim", size=64)
    return GenerationRequest(**{**base, **kw})


def _img(w=64, h=64, value=128) -> Image.Image:
    return Image.new("RGB", (w, h), (value,) * 3)


def words(text: str) -> int:   # a stand-in tokenizer: one token per word plus [CLS] and [SEP]
    return len(text.split()) + 2


def test_a_complete_request_passes():
    check_request(_ok(), SIZES, token_count=words)
    check_request(_ok(init_image=_img(), strength=1.0, mask=_img(value=255)), SIZES)
    check_request(_ok(n=MAX_N, seed=MAX_SEED - MAX_N, steps=MAX_STEPS, guidance=30.0), SIZES)


@pytest.mark.parametrize("changes, message", [
    ({"prompt": ""}, "the prompt is empty"),
    ({"prompt": "   \n"}, "the prompt is empty"),
    ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"the prompt has 1001 characters; the limit is {MAX_PROMPT_CHARS}"),
    ({"negative_prompt": "y" * (MAX_PROMPT_CHARS + 1)}, "the negative prompt has 1001 characters"),
    ({"prompt": "apple " * 80}, f"the prompt has 82 tokens; the limit is {MAX_PROMPT_TOKENS}"),
    ({"negative_prompt": "blurry " * 80}, "the negative prompt has 82 tokens"),
    ({"scheduler": "plms"}, "unknown scheduler 'plms'; choose from: ddpm, ddim, dpmpp_2m, euler, euler_a, heun"),
    ({"size": 100}, "size 100 is not supported by this model; choose from: 64, 128, 256"),
    ({"size": 512}, "size 512 is not supported"),
    ({"n": 0}, f"n must be between 1 and {MAX_N}, got 0"),
    ({"n": MAX_N + 1}, f"n must be between 1 and {MAX_N}, got 17"),
    ({"steps": 0}, f"steps must be between 1 and {MAX_STEPS}, got 0"),
    ({"steps": MAX_STEPS + 1}, "steps must be between 1 and 1000, got 1001"),
    ({"guidance": -0.5}, "guidance must be between 0 and 30.0, got -0.5"),
    ({"guidance": 30.5}, "guidance must be between 0 and 30.0"),
    ({"seed": -1}, "seed must be between 0 and"),
    ({"seed": MAX_SEED}, "seed must be between 0 and"),   # seed + i must stay a valid seed
    ({"mask": _img(value=255)}, "a mask needs an init image"),
    ({"init_image": _img(), "mask": _img(32, 32)}, "the mask is 32x32 but the init image is 64x64"),
    ({"init_image": _img(), "strength": 0.0}, "strength must be in (0, 1], got 0.0"),
    ({"init_image": _img(), "strength": 1.5}, "strength must be in (0, 1], got 1.5"),
])
def test_bad_requests_raise_request_error_with_what_to_change(changes, message):
    with pytest.raises(RequestError) as e:
        check_request(_ok(**changes), SIZES, token_count=words)
    assert message in str(e.value)


def test_request_error_is_a_value_error():
    assert issubclass(RequestError, ValueError)   # entry points catch ValueError for user errors


def test_oversized_init_image_is_refused():
    class Huge:   # only .size is read; avoids allocating a 4096x4097 image
        size = (4096, 4097)
    with pytest.raises(RequestError, match="at most 16777216 pixels"):
        check_request(_ok(init_image=Huge()), SIZES)


def test_strength_is_ignored_without_an_init_image():
    check_request(_ok(strength=5.0), SIZES)


def test_task_and_params():
    assert _ok().task == "text_to_image"
    assert _ok(init_image=_img()).task == "image_to_image"
    assert _ok(init_image=_img(), mask=_img()).task == "inpaint"
    params = _ok(init_image=_img(), mask=_img()).params()
    assert params["task"] == "inpaint" and params["seed"] == 3
    assert "init_image" not in params and "mask" not in params
    assert replace(_ok(), seed=9).params()["seed"] == 9


def test_mask_array_is_binary_at_the_requested_size():
    m = np.zeros((64, 64), np.uint8)
    m[:, 32:] = 255
    arr = mask_array(Image.fromarray(m), 16)
    assert arr.shape == (16, 16) and arr.dtype == np.float32
    assert set(np.unique(arr)) == {0.0, 1.0}
    assert (arr[:, :8] == 0).all() and (arr[:, 8:] == 1).all()   # white = repaint
