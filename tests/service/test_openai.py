"""The OpenAI-compatible API, driven by the official `openai` package against a real server on loopback."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from conjure.provenance.metadata import parse_parameters
from conjure.service import screening

from .conftest import MODEL, make_settings, start_live_server

FAST = {"steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    settings = make_settings(tmp_path_factory.mktemp("openai-home"), tiny_model_dir)
    live, _, stop = start_live_server(settings)
    yield live
    stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused-on-loopback", max_retries=0, timeout=60)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_generations_return_signed_urls(client):
    result = client.images.generate(model=MODEL, prompt="red apple", n=2, size="256x256",
                                    extra_body={"seed": 11, **FAST})
    assert len(result.data) == 2 and result.created > 0
    for i, item in enumerate(result.data):
        r = httpx.get(item.url, timeout=30)
        assert r.status_code == 200
        with Image.open(io.BytesIO(r.content)) as im:
            assert im.size == (256, 256)
            assert parse_parameters(im.text["parameters"])["Seed"] == str(11 + i)


def test_generations_inline_base64_with_conjure_fields(client):
    result = client.images.generate(prompt="blue star", size="256x256", response_format="b64_json",
                                    extra_body={"negative_prompt": "red", "guidance": 3.0, **FAST})
    with Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))) as im:
        params = parse_parameters(im.text["parameters"])
        assert im.size == (256, 256)
    # the policy's safety negative prompt follows the user's, and the file is stamped (C2PA + watermark)
    assert params["negative_prompt"].startswith("red, ") and params["CFG scale"] == "3.0" and params["Model"] == MODEL
    assert params["Job"] and params["Watermark"] != "none (too small)"


def test_edits_repaint_where_the_mask_is_transparent(client, server):
    image = Image.new("RGB", (64, 64), (0, 0, 255))
    mask = np.full((64, 64, 4), 255, np.uint8)
    mask[:, :16, 3] = 0   # transparent = repaint
    result = client.images.edit(image=("in.png", _png(image), "image/png"),
                                mask=("mask.png", _png(Image.fromarray(mask, "RGBA")), "image/png"),
                                prompt="red apple", size="256x256", response_format="b64_json", extra_body=FAST)
    with Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))) as im:
        assert parse_parameters(im.text["parameters"])["Task"] == "inpaint"
    job = server.client.get("/v1/jobs", params={"limit": 1}).json()["data"][0]
    with Image.open(server.settings.home / "files" / job["spec"]["mask"]) as stored:   # conjure's convention
        m = np.asarray(stored)
    assert (m[:, :16] == 255).all() and (m[:, 16:] == 0).all()


def test_models_lists_registered_models(client):
    ids = {m.id: m for m in client.models.list().data}
    assert MODEL in ids and ids[MODEL].owned_by == "conjure"


def test_errors_are_openai_shaped(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", size="64x32", extra_body=FAST)
    assert e.value.body["type"] == "invalid_request_error" and "square" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", n=50)
    assert e.value.body["param"] == "n"


def test_a_refused_prompt_is_a_content_policy_violation_with_its_verdict(client, monkeypatch):
    verdict = {"action": "refuse", "category": "test-category", "reason": "forbidden word", "check": "test-rule"}
    monkeypatch.setattr(screening, "PROMPT_SCREENS", [lambda spec: verdict if "forbidden" in spec["prompt"] else None])
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="something forbidden", extra_body=FAST)
    body = e.value.body
    assert body["code"] == "content_policy_violation" and body["verdict"] == verdict
    assert client.images.generate(prompt="something fine", size="256x256", extra_body=FAST).data
