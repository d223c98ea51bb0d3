"""The A1111 `parameters` PNG chunk: written, read back, parsed."""

from __future__ import annotations

import pytest
from PIL import Image

from conjure.diffusion.samplers import SAMPLERS
from conjure.provenance.metadata import SAMPLER_LABELS, parameters_text, parse_parameters, save_png

ARGS = dict(prompt="a red apple, on a table", negative="blurry, dark", steps=20, sampler="dpmpp_2m", guidance=5.0,
            seed=42, size=256, model="test-tiny", model_hash="0123456789abcdef")


def test_parameters_text_is_the_three_line_a1111_format():
    text = parameters_text(**ARGS)
    assert text.split("\n") == [
        "a red apple, on a table",
        "Negative prompt: blurry, dark",
        "Steps: 20, Sampler: DPM++ 2M, CFG scale: 5.0, Seed: 42, Size: 256x256, "
        "Model hash: 0123456789abcdef, Model: test-tiny",
    ]


def test_no_negative_prompt_line_when_there_is_none():
    text = parameters_text(**{**ARGS, "negative": ""})
    assert len(text.split("\n")) == 2 and "Negative prompt" not in text


@pytest.mark.parametrize("negative", ["blurry, dark", ""])
def test_round_trip(negative):
    parsed = parse_parameters(parameters_text(**{**ARGS, "negative": negative}, extra={"Task": "inpaint"}))
    assert parsed == {"prompt": "a red apple, on a table", "negative_prompt": negative, "Steps": "20",
                      "Sampler": "DPM++ 2M", "CFG scale": "5.0", "Seed": "42", "Size": "256x256",
                      "Model hash": "0123456789abcdef", "Model": "test-tiny", "Task": "inpaint"}


def test_every_sampler_has_an_a1111_label():
    assert set(SAMPLER_LABELS) == set(SAMPLERS)
    assert "Sampler: Euler a," in parameters_text(**{**ARGS, "sampler": "euler_a"})


def test_save_png_writes_the_chunk_atomically(tmp_path):
    text = parameters_text(**ARGS)
    path = save_png(Image.new("RGB", (8, 8), "red"), tmp_path / "out.png", text)
    assert path == tmp_path / "out.png"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]   # no .part left behind
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (8, 8)
        assert im.text["parameters"] == text
        assert parse_parameters(im.text["parameters"])["Seed"] == "42"


def test_save_png_replaces_an_existing_file(tmp_path):
    save_png(Image.new("RGB", (4, 4)), tmp_path / "a.png", "first\nSeed: 1")
    save_png(Image.new("RGB", (4, 4)), tmp_path / "a.png", "second\nSeed: 2")
    with Image.open(tmp_path / "a.png") as im:
        assert parse_parameters(im.text["parameters"])["prompt"] == "second"
