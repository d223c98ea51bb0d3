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


# The ONNX Runtime backend against transformers: same tokens, same states to float rounding.
TRICKY = ["", "a red apple", "Ünïcödé café — naïve résumé", "emoji 🍎 and 漢字", "UPPER case, punctuation!?",
          "apple " * 40, "a\ttab and\nnewline", "don't stop-believing: 3.5 stars"]


@pytest.mark.parametrize("max_tokens", [2, 16, MAX_TOKENS, 128])
def test_the_tokenizer_matches_transformers(max_tokens):
    from transformers import AutoTokenizer
    from conjure.text.encoder import Tokenizer
    ref = AutoTokenizer.from_pretrained(model_path(), local_files_only=True)
    ours = Tokenizer(model_path())
    for pad in ("max_length", "longest"):
        ids, mask = ours(TRICKY, max_tokens, pad=pad)
        want = ref(TRICKY, padding=pad, truncation=True, max_length=max_tokens, return_tensors="pt")
        assert torch.equal(ids, want["input_ids"]) and torch.equal(mask, want["attention_mask"])
    assert [len(r) for r in ours.ids(TRICKY)] == [len(ref(p, truncation=False)["input_ids"]) for p in TRICKY]


def test_the_onnx_backend_matches_transformers_and_is_cached(tmp_path, monkeypatch):
    from conjure.nn.onnx import OnnxGraph
    from conjure.text.encoder import TextEncoder
    onnx = TextEncoder(backend="onnx", onnx_cache=tmp_path)
    torch_ = TextEncoder(backend="torch")
    assert onnx.backend == "onnx" and torch_.backend == "torch"
    a, ma = onnx.encode(TRICKY, max_tokens=MAX_TOKENS)
    b, mb = torch_.encode(TRICKY, max_tokens=MAX_TOKENS)
    assert torch.equal(ma, mb) and torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx.pooled(TRICKY), torch_.pooled(TRICKY), atol=1e-5, rtol=1e-5)
    assert len(list(tmp_path.glob("minilm-*.onnx"))) == 1            # one graph: batch and tokens are free

    def no_export(self, example):
        raise AssertionError("exported again although the graph is cached")
    monkeypatch.setattr(OnnxGraph, "_export", no_export)
    later = TextEncoder(backend="onnx", onnx_cache=tmp_path)
    torch.testing.assert_close(later.encode(TRICKY[:3], max_tokens=16)[0], onnx.encode(TRICKY[:3], max_tokens=16)[0])
    assert later._model is None                                       # transformers' model never built
    with pytest.raises(ValueError, match="backend must be one of onnx, torch"):
        TextEncoder(backend="tensorrt")
