"""Image screening: NSFW score, faces and OCR recorded in the verdict; blur and withhold actions."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from conjure.safety import screen_image
from conjure.safety import image as image_mod

FACE_PNG = Path(__file__).parent / "data" / "noto-man-cook.png"


def _plain(size=256):
    im = Image.new("RGB", (size, size), (235, 240, 250))
    ImageDraw.Draw(im).ellipse((60, 60, 196, 196), fill=(220, 40, 40))   # a red apple-ish disc
    return im


def _policy_with(policy, **image_fields):
    return dataclasses.replace(policy, image=dataclasses.replace(policy.image, **image_fields))


def test_benign_image_passes_with_every_check_recorded(policy):
    v, out = screen_image(_plain(), policy=policy, ocr=False)
    assert v.allowed and v.action == "allow" and out is not None
    assert v.stage == "image" and v.policy_version == policy.version
    assert 0.0 <= v.details["nsfw"] < policy.image.nsfw_blur_threshold
    assert v.details["faces"] == [] and v.details["ocr"]["run"] is False
    v.to_json()


def test_blur_action_blurs(policy):
    strict = _policy_with(policy, nsfw_blur_threshold=0.0, nsfw_block_threshold=1.0)
    im = _plain()
    v, out = screen_image(im, policy=strict, ocr=False)
    assert v.action == "blur" and v.check == "nsfw" and v.allowed
    assert out is not None and out.size == im.size
    edges = lambda x: np.abs(np.diff(np.asarray(x.convert("L"), dtype=float), axis=1)).max()
    assert edges(out) < 0.25 * edges(im)          # the disc's sharp edge is gone


def test_block_action_withholds(policy):
    strict = _policy_with(policy, nsfw_blur_threshold=0.0, nsfw_block_threshold=0.0)
    v, out = screen_image(_plain(), policy=strict, ocr=False)
    assert v.blocked and out is None and v.check == "nsfw"


def test_face_is_flagged_by_default(policy):
    face = Image.open(FACE_PNG).convert("RGB").resize((256, 256), Image.LANCZOS)
    v, out = screen_image(face, policy=policy, ocr=False)
    assert v.details["faces"], "the Haar cascade should find the emoji's face"
    assert v.action == "flag" and v.check == "faces" and v.allowed and out is face


def test_ocr_reported_as_not_run_when_missing(policy, monkeypatch):
    monkeypatch.setattr(image_mod, "ocr_available", lambda: False)
    v, _ = screen_image(_plain(), policy=policy, ocr=True)
    assert v.details["ocr"] == {"run": False, "reason": "rapidocr-onnxruntime is not installed"}


@pytest.mark.skipif(not image_mod.ocr_available(), reason="rapidocr-onnxruntime is not installed")
def test_ocr_text_is_screened(policy, encoder):
    im = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(im).text((10, 120), "WHITE POWER NAZI PROPAGANDA", fill="black")
    v, out = screen_image(im, policy=policy, ocr=True, encoder=encoder)
    assert v.details["ocr"]["run"] and "POWER" in v.details["ocr"]["text"].upper()
    assert v.check == "ocr" and v.blocked and out is None


@pytest.mark.skipif(not image_mod.ocr_available(), reason="rapidocr-onnxruntime is not installed")
def test_ocr_reads_text_drawn_with_pil(policy, encoder):
    """OCR reads text drawn with PIL's own font, and screen_image records what it read.
    Spaces are compared away: the packaged (Chinese PP-OCRv4) recogniser runs Latin words together."""
    im = Image.new("RGB", (320, 128), "white")
    ImageDraw.Draw(im).text((16, 40), "OPEN DAILY 9 TO 5", fill="black", font=ImageFont.load_default(size=28))
    assert "OPENDAILY9TO5" in image_mod.read_text(im).upper().replace(" ", "")
    v, _ = screen_image(im, policy=policy, ocr=True, encoder=encoder)
    assert v.details["ocr"]["run"] and "OPENDAILY" in v.details["ocr"]["text"].upper().replace(" ", "")


def test_sessions_are_built_once_and_reused(policy):
    """Speed is measured by benchmarks/safety.py, not here; this checks what makes it fast: after the first
    call, screening builds no new classifier or cascade."""
    from conjure.safety import image as image_mod
    im = _plain()
    screen_image(im, policy=policy, ocr=False)      # warm: sessions are built once and reused
    before = (image_mod.nsfw_classifier.cache_info().misses, image_mod.face_cascade.cache_info().misses)
    for _ in range(3):
        screen_image(im, policy=policy, ocr=False)
    after = (image_mod.nsfw_classifier.cache_info(), image_mod.face_cascade.cache_info())
    assert (after[0].misses, after[1].misses) == before
    assert after[0].hits >= 3 and after[1].hits >= 3


@pytest.mark.parametrize("bad", [None, "image.png", np.zeros((8, 8, 3), np.uint8)])
def test_bad_image_is_a_value_error(bad, policy):
    with pytest.raises(ValueError, match="PIL.Image"):
        screen_image(bad, policy=policy)
