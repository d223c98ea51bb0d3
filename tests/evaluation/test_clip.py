"""CLIP metrics: R@k with ties as misses, CLIP score, and the committed conjure-clip on real pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conjure.config import BUILTIN_MODELS_DIR
from conjure.evaluation.clip import clip_score, recall_at_k, retrieval_among_distinct

CLIP_MODEL = BUILTIN_MODELS_DIR / "conjure-clip"


def test_recall_at_k_counts_ties_as_misses():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.1, 0.2, 0.3]])
    r = recall_at_k(sim, torch.tensor([0, 1, 0]), ks=(1, 2, 3))
    assert r == {"r1": pytest.approx(1 / 3), "r2": pytest.approx(2 / 3), "r3": pytest.approx(1.0)}


def test_retrieval_among_distinct_is_perfect_for_matching_embeddings():
    caps = [f"caption {i}" for i in range(150)]
    emb = torch.nn.functional.normalize(torch.randn(150, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    res = retrieval_among_distinct(emb, caps, {c: emb[i] for i, c in enumerate(caps)}, n_captions=100, draws=3)
    assert res["r1"] == 1.0 and res["n_captions"] == 100 and res["chance_r1"] == 0.01


def test_clip_score_is_100_cosine_clamped():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert clip_score(a, b).tolist() == [100.0, 0.0]


def test_frozen_trunk_features_feed_the_image_projection():
    from conjure.evaluation.train import frozen_trunk_features
    from conjure.models.clip import ClipConfig, ClipModel
    model = ClipModel(ClipConfig(widths=[8, 16, 16, 16], embed_dim=16, text_hidden=32)).eval()
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats = frozen_trunk_features(model, images, copies=2, max_shift=3, seed=0, batch=2)
    assert feats.shape == (2, 5, 32) and not torch.equal(feats[0], feats[1])   # copy 1 is shifted
    with torch.no_grad():
        torch.testing.assert_close(model.project_image(feats[0]), model.encode_image(images))


@pytest.mark.skipif(not (CLIP_MODEL / "model.safetensors").is_file(), reason="models/conjure-clip is not trained yet")
def test_committed_clip_ranks_real_pairs_above_shuffled_pairs(tiny_data):
    from conjure.data import load_sources
    from conjure.evaluation.clip import embed_images
    from conjure.models.clip import ClipModel
    model = ClipModel.from_pretrained(CLIP_MODEL)
    d = load_sources(list(tiny_data.sources))
    images = torch.from_numpy(np.ascontiguousarray(d.images)).permute(0, 3, 1, 2).contiguous()
    captions = [r["captions"][0] for r in d.records]
    img = embed_images(model, images)
    txt = model.embed_captions(captions)
    sim = img @ txt.t()
    real = recall_at_k(sim, torch.arange(len(captions)))
    shuffled = recall_at_k(sim, torch.randperm(len(captions), generator=torch.Generator().manual_seed(0)))
    assert real["r1"] > shuffled["r1"] + 0.1
    assert real["r5"] > shuffled["r5"] + 0.1
    assert clip_score(img, txt).mean() > clip_score(img, txt[torch.roll(torch.arange(len(txt)), 1)]).mean()


def test_match_targets_keep_skin_tones_and_outline_forms_apart_unless_asked():
    """Retrieval is judged among distinct captions, so by default only the same caption matches; 'group'
    matching (the old recipe) also joins captions of one concept group, such as an emoji's skin tones."""
    from conjure.evaluation.recipe import ClipRecipe
    from conjure.evaluation.train import match_targets
    # items 0 and 1: the same caption (noto and twemoji); item 2: a skin tone of the same emoji; item 3: other
    captions, groups = torch.tensor([0, 0, 1, 2]), torch.tensor([5, 5, 5, 6])
    by_caption = match_targets(captions)
    assert by_caption.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    by_group = match_targets(captions, groups)
    assert by_group.tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]]
    assert ClipRecipe(name="c").match == "caption"
    with pytest.raises(ValueError, match="caption' or 'group"):
        ClipRecipe(name="c", match="concept")


def test_clip_recipe_with_a_tuned_text_layer_trains_saves_and_reloads(tiny_data, tmp_path):
    """Both stages on the tiny caches: the image side, then MiniLM's top layer and the text head against it.
    The saved model carries its own top layer, no longer the package's, and embeds captions through it."""
    from conjure.evaluation.recipe import ClipRecipe
    from conjure.evaluation.train import train_clip
    from conjure.models.clip import ClipModel
    from conjure.text.minilm import MiniLM
    recipe = ClipRecipe(name="clip-test", sources=list(tiny_data.sources), preset="tiny", embed_dim=32,
                        text_hidden=64, captions_per_item=1, epochs=1, batch=32, save_every_steps=100,
                        threads=1, text_tune_layers=1, text_epochs=2, text_lr_layer=1e-3)
    run = tmp_path / "run"
    run.mkdir()
    out = train_clip(recipe, run)
    model = ClipModel.from_pretrained(out)
    assert model.config.text_tune_layers == 1 and model.text_top.first == 5
    package_top = MiniLM(5).load_package().state_dict()
    changed = [k for k, v in model.text_top.state_dict().items() if not torch.equal(v, package_top[k])]
    assert changed, "the second stage left MiniLM's top layer as the package has it"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r.get("stage") == "text"] == [0, 1]
    emb = model.embed_captions(["grinning face", "house icon", "grinning face"])
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(emb[0], emb[2])
    assert not torch.allclose(emb[0], emb[1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["text_stage"]["layers"] == 1


def test_a_clip_without_tuned_layers_embeds_captions_from_pooled_vectors():
    from conjure.evaluation.clip import text_vectors
    from conjure.models.clip import ClipConfig, ClipModel
    torch.manual_seed(0)
    model = ClipModel(ClipConfig(widths=[8, 8, 8, 8], embed_dim=16, text_hidden=32))
    assert model.text_top is None
    with torch.no_grad():
        expected = model.encode_text(text_vectors(["red apple", "bell icon"]))
    torch.testing.assert_close(model.embed_captions(["red apple", "bell icon"]), expected)
    with pytest.raises(ValueError, match="text_tune_layers"):
        ClipModel(ClipConfig(text_tune_layers=7))
