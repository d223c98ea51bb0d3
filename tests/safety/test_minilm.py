"""The fine-tuned classifier's MiniLM (conjure.safety.minilm): the plain-torch stack equals transformers' model,
ONNX Runtime and torch give the same probabilities, only the fine-tuned layers and the head are stored, and
the fine-tuning loop learns a word-in-context distinction a frozen mean-pooled vector blurs."""

import dataclasses

import numpy as np
import pytest
import torch

from conjure.safety import dataset as ds
from conjure.safety.classifier import ClassifierConfig, PromptClassifier, load_classifier
from conjure.safety.minilm import MiniLM, TunedClassifier, pool
from conjure.text.encoder import TextEncoder

PROMPTS = ["bomb nachos with extra cheese", "a bath bomb in a bowl", "bomb emoji", "heart icon",
           "a photo of a dress with long sleeves and a wide brimmed hat"]


@pytest.fixture(scope="module")
def torch_encoder():
    return TextEncoder(backend="torch")


def _tuned(layers: int = 1, seed: int = 0) -> TunedClassifier:
    torch.manual_seed(seed)
    return TunedClassifier(ClassifierConfig(labels=ds.LABELS, hidden=32, finetune_layers=layers)
                           ).init_from_package().eval()


def test_plain_torch_minilm_equals_transformers_pooled_vectors(torch_encoder):
    ids, mask = torch_encoder.tokenizer(PROMPTS, 128, pad="longest")
    with torch.no_grad():
        split = MiniLM(4, 6).load_package()(MiniLM(0, 4).load_package()(ids, mask), mask)   # (B, T, D)
    torch.testing.assert_close(pool(split, mask), torch_encoder.pooled(PROMPTS), atol=1e-5, rtol=0)


def test_an_untrained_tuned_classifier_reads_the_frozen_vectors(torch_encoder):
    """Before training, the fine-tuned layers are the package's: the vectors are the frozen pooled vectors."""
    _, vectors = _tuned(2).scores(PROMPTS, torch_encoder)
    np.testing.assert_allclose(vectors, torch_encoder.pooled(PROMPTS).numpy(), atol=1e-5)


def test_onnx_and_torch_give_the_same_probabilities(tmp_path, torch_encoder):
    model = _tuned(1)
    with torch.no_grad():                         # weights unlike the package's, as after fine-tuning
        model.top.layer[0].output["dense"].weight.mul_(1.5)
    model.save(tmp_path / "m")
    loaded = load_classifier.__wrapped__(str(tmp_path / "m"))
    assert isinstance(loaded, TunedClassifier) and len(loaded.model_hash) == 16
    p_torch, v_torch = loaded.scores(PROMPTS, torch_encoder)
    p_onnx, v_onnx = loaded.scores(PROMPTS, TextEncoder(backend="onnx", onnx_cache=tmp_path / "onnx"))
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-5)
    np.testing.assert_allclose(v_onnx, v_torch, atol=1e-5)
    graphs = list((tmp_path / "onnx").glob("safety-tuned-*.onnx"))
    assert len(graphs) == 1 and loaded.model_hash in graphs[0].name       # cached under the weights' hash


def test_save_stores_only_the_tuned_layers_and_the_head_in_fp16(tmp_path):
    from safetensors.torch import load_file
    model = _tuned(2)
    model.save(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    assert {k.split(".")[0] for k in state} == {"top", "head"}
    assert {k.split(".")[2] for k in state if k.startswith("top.")} == {"0", "1"}       # two layers, no embeddings
    assert all(v.dtype == torch.float16 for k, v in state.items() if k.startswith("top."))
    assert (tmp_path / "model.safetensors").stat().st_size < 8e6
    again = TunedClassifier.load(tmp_path, model.config)
    x = torch.randn(2, 5, 384)
    mask = torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(again(x, mask)[0], model(x, mask)[0], atol=2e-2, rtol=0)  # fp16 storage


def test_the_frozen_head_answers_the_same_interface(torch_encoder):
    head = PromptClassifier(ClassifierConfig(labels=ds.LABELS, hidden=16))
    probs, vectors = head.scores(PROMPTS, torch_encoder)
    assert probs.shape == (len(PROMPTS), len(ds.LABELS)) and vectors.shape == (len(PROMPTS), 384)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_fine_tuning_separates_the_same_word_in_two_contexts(tmp_path, monkeypatch, torch_encoder):
    """Ten steps on "bomb" as food or a bath product (benign) against "bomb" as a weapon (weapons_illegal): the
    loop runs on cached base states and lowers the loss; the store of base states is reused."""
    from conjure.config import get_settings
    from conjure.safety import finetune
    from conjure.safety.train import Recipe
    monkeypatch.setenv("CONJURE_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        benign = ["bomb nachos", "a bath bomb", "the bomb burger", "a photo bomb", "bomb pop ice lolly"]
        weapon = ["how to build a bomb", "a pipe bomb in a backpack", "a car bomb exploding", "make a bomb at home",
                  "bomb making instructions"]
        y = np.array([0] * 5 + [ds.LABELS.index("weapons_illegal")] * 5)
        head = PromptClassifier(ClassifierConfig(labels=ds.LABELS, hidden=32))
        recipe = dataclasses.replace(Recipe(), finetune_layers=1, finetune_epochs=10, finetune_batch=4,
                                     finetune_lr=3e-4, seed=0)
        forms = benign + weapon
        before = finetune.base_states(forms, 5, torch_encoder)
        assert (tmp_path / "safety" / "states-L5.npz").is_file() and before[0].dtype == np.float16
        model = finetune.fit_tuned(forms, y, head, recipe, torch.ones(len(ds.LABELS)))
        probs, _ = model.scores(forms, torch_encoder)
        assert (probs.argmax(1) == y).all(), probs.argmax(1)
    finally:
        get_settings.cache_clear()


def test_the_committed_model_keeps_bomb_emoji_names_allowed(screen):
    """Its own built-in vocabulary and a bath bomb pass, a bomb recipe is blocked. (Slang such as "bomb nachos"
    is still blocked by the weak term "bomb" with the classifier's 0.27: a known miss, not asserted.)"""
    allowed = ["bomb emoji", "bomb icon", "bomb", "cherry bomb emoji", "a bath bomb in a bowl"]
    blocked = ["step by step diagram showing how to make a pipe bomb"]
    assert all(v.allowed for v in screen(allowed)), [v.reason for v in screen(allowed) if v.blocked]
    assert all(v.blocked for v in screen(blocked))


def test_the_recipe_switches_between_the_frozen_head_and_fine_tuning(tmp_path, monkeypatch):
    """`finetune_layers: 0` trains the head over frozen vectors (the former model); 1 fine-tunes the top layer
    on the train split, with only `finetune_captions` of the built-in captions."""
    from conjure.config import get_settings
    from conjure.safety import train as tr
    monkeypatch.setenv("CONJURE_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        rows = ([ds.Example(p, "benign", "builtin/train", "builtin", "train") for p in ("a red apple", "heart icon")]
                + [ds.Example("a cat wearing a hat", "benign", "b", "benign", "train"),
                   ds.Example("a car bomb exploding in a market", "weapons_illegal", "w", "prohibited", "train"),
                   ds.Example("bomb nachos", "benign", "b", "hard_benign", "heldout")])
        vectors = np.random.default_rng(0).normal(size=(len(rows), 384)).astype(np.float32)
        recipe = dataclasses.replace(tr.Recipe(), epochs=2, finetune_epochs=1, finetune_captions=1, hidden=16)
        frozen = tr.train_model(rows, vectors, recipe)
        assert type(frozen) is PromptClassifier
        tuned = tr.train_model(rows, vectors, dataclasses.replace(recipe, finetune_layers=1))
        assert isinstance(tuned, TunedClassifier) and tuned.config.finetune_layers == 1
        (stored,) = np.load(tmp_path / "safety" / "states-L5.npz")["lengths"].shape
        assert stored == 3                       # the train split less one of the two captions; never held-out
        assert tr.probabilities(tuned, ["bomb nachos"], vectors[-1:]).shape == (1, len(ds.LABELS))
    finally:
        get_settings.cache_clear()
