"""The packaged MiniLM text encoder: shapes, masks, pooled vectors and determinism."""

from __future__ import annotations

import pytest
import torch

from conjure.text import EMBED_DIM, MAX_TOKENS, get_text_encoder
from conjure.text.encoder import model_path

PROMPTS = ["a red apple", "heart icon", "a photo of a dress with long sleeves"]


@pytest.fixture(scope="module")
def encoder():
    return get_text_encoder()


def test_the_model_is_loaded_from_the_installed_package():
    path = model_path()
    assert path.is_dir() and (path / "config.json").is_file()
    assert get_text_encoder() is get_text_encoder()   # loaded once per process


@pytest.mark.parametrize("max_tokens", [16, MAX_TOKENS])
def test_token_states_have_shape_b_t_d(encoder, max_tokens):
    states, mask = encoder.encode(PROMPTS, max_tokens=max_tokens)
    assert states.shape == (len(PROMPTS), max_tokens, EMBED_DIM) == (3, max_tokens, 384)
    assert mask.shape == (len(PROMPTS), max_tokens)
    assert set(mask.unique().tolist()) <= {0, 1}
    assert torch.isfinite(states).all()


def test_mask_counts_the_real_tokens(encoder):
    _, mask = encoder.encode(PROMPTS, max_tokens=16)
    assert mask.sum(1).tolist() == [encoder.count_tokens(p) for p in PROMPTS]
    assert encoder.count_tokens("a red apple") == 5   # [CLS] a red apple [SEP]
    assert (mask[0, :5] == 1).all() and (mask[0, 5:] == 0).all()   # padding comes after the prompt


def test_long_prompts_are_cut_to_max_tokens(encoder):
    long = "apple " * 40
    assert encoder.count_tokens(long) == 42
    states, mask = encoder.encode([long], max_tokens=16)
    assert states.shape == (1, 16, 384) and mask.sum().item() == 16


def test_pooled_vectors_have_unit_length(encoder):
    v = encoder.pooled(PROMPTS)
    assert v.shape == (3, EMBED_DIM)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))


def test_pooled_similarity_is_semantic(encoder):
    apple_red, apple, car = encoder.pooled(["a red apple", "an apple", "a car"])
    assert apple_red @ apple > apple_red @ car + 0.2


def test_encoding_is_deterministic_and_independent_of_the_batch(encoder):
    a, ma = encoder.encode(PROMPTS, max_tokens=16)
    b, mb = encoder.encode(PROMPTS, max_tokens=16)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    single, _ = encoder.encode(PROMPTS[1:2], max_tokens=16)
    torch.testing.assert_close(single[0], a[1], atol=1e-5, rtol=1e-5)
