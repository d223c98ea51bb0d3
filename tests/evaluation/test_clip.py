"""CLIP metrics: R@k with ties as misses, CLIP score, and the committed conjure-clip on real pairs."""

from __future__ import annotations

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
    from conjure.evaluation.clip import embed_images, text_vectors
    from conjure.models.clip import ClipModel
    model = ClipModel.from_pretrained(CLIP_MODEL)
    d = load_sources(list(tiny_data.sources))
    images = torch.from_numpy(np.ascontiguousarray(d.images)).permute(0, 3, 1, 2).contiguous()
    captions = [r["captions"][0] for r in d.records]
    img = embed_images(model, images)
    with torch.no_grad():
        txt = model.encode_text(text_vectors(captions))
    sim = img @ txt.t()
    real = recall_at_k(sim, torch.arange(len(captions)))
    shuffled = recall_at_k(sim, torch.randperm(len(captions), generator=torch.Generator().manual_seed(0)))
    assert real["r1"] > shuffled["r1"] + 0.1
    assert real["r5"] > shuffled["r5"] + 0.1
    assert clip_score(img, txt).mean() > clip_score(img, txt[torch.roll(torch.arange(len(txt)), 1)]).mean()
