"""Metric correctness on constructed cases: identical sets give about zero, degraded sets give worse numbers
on every metric, swapped labels lower class accuracy. Uses the committed conjure-features network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conjure.evaluation.data import label_tensor
from conjure.evaluation.degrade import blur, noise, shift
from conjure.evaluation.metrics import (FEATURES_MODEL, bootstrap_ci, class_accuracy, features_of, fid_from_features,
                                        image_set_metrics, inception_style_score, kid_from_features,
                                        load_feature_net, precision_recall, torchmetrics_scores, feature_scores)

pytestmark = pytest.mark.skipif(not (FEATURES_MODEL / "model.safetensors").is_file(),
                                reason="models/conjure-features is not trained yet")


@pytest.fixture(scope="module")
def net():
    return load_feature_net()


@pytest.fixture(scope="module")
def real(tiny_data):
    """The tiny dataset cache (noto, twemoji, mdi, tabler; 60 items each) as uint8 (N, 3, 64, 64) and records."""
    from conjure.data import load_sources
    d = load_sources(list(tiny_data.sources))
    return torch.from_numpy(np.ascontiguousarray(d.images)).permute(0, 3, 1, 2).contiguous(), d.records


def test_extractor_takes_uint8_and_declares_num_features(net):
    from conjure.evaluation.metrics import ConjureFeatures
    ext = ConjureFeatures(net)
    out = ext(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert out.shape == (2, ext.num_features)
    assert ext(torch.full((1, 3, 128, 128), 255, dtype=torch.uint8)).shape == (1, ext.num_features)  # resized
    with pytest.raises(ValueError, match="uint8"):
        ext(torch.rand(1, 3, 64, 64))


def test_identical_sets_give_about_zero(net, real):
    images, _ = real
    f = features_of(net, images)
    assert abs(fid_from_features(f, f)) < 1e-6 * max(1.0, float(f.var(0).sum()))
    assert abs(kid_from_features(f, f, subsets=1, subset_size=len(f))[0]) < 1e-9 * float((f @ f.t()).abs().max() ** 3 + 1)
    assert precision_recall(f.float(), f.float()) == {"precision": 1.0, "recall": 1.0}


def test_torchmetrics_and_feature_paths_agree(net, real):
    images, _ = real
    a, b = images[::2], noise(images[1::2], sigma=20)
    tm = torchmetrics_scores(net, a, b, is_head="source")
    fs = feature_scores(net, a, b, is_head="source")
    assert tm["fid_conjure"] == pytest.approx(fs["fid_conjure"], rel=1e-3)
    assert tm["kid_conjure"] == pytest.approx(fs["kid_conjure"], rel=0.3)   # random subsets differ
    assert tm["is_conjure"] == pytest.approx(fs["is_conjure"], rel=0.1)     # random splits differ


@pytest.mark.parametrize("degrade", [blur, noise, shift], ids=["blur", "noise", "shift"])
def test_degraded_sets_worsen_every_metric(net, real, degrade):
    images, _ = real
    half = len(images) // 2
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    a, b = images[perm[:half]], images[perm[half:]]
    same = image_set_metrics(net, a, b, is_head="source", bootstrap=10, via_torchmetrics=False)
    worse = image_set_metrics(net, a, degrade(b), is_head="source", bootstrap=10, via_torchmetrics=False)
    assert worse["fid_conjure"] > same["fid_conjure"] * 1.5
    assert worse["kid_conjure"] > same["kid_conjure"]
    assert worse["precision_conjure"] < same["precision_conjure"]
    assert worse["recall_conjure"] < same["recall_conjure"]
    assert worse["ci95"]["fid_conjure"][0] > same["ci95"]["fid_conjure"][1]   # the intervals do not overlap


def test_swapping_class_labels_lowers_class_accuracy(net, real):
    images, records = real
    heads = [h for h in ("source", "emoji_category", "tabler_category") if h in net.config.heads]
    labels = label_tensor(records, {h: net.config.heads[h] for h in heads})
    right = class_accuracy(net, images, labels)
    g = torch.Generator().manual_seed(0)
    swapped = class_accuracy(net, images, {h: y[torch.randperm(len(y), generator=g)] for h, y in labels.items()})
    assert right["emoji_category"] > 0.8             # these tiny-cache items are mostly training items
    for h in right:
        assert swapped[h] < right[h] - 0.1, h


def test_inception_style_score_rewards_confident_diverse_predictions():
    k = 10
    confident_diverse = torch.eye(k).repeat(20, 1) * 20          # every class, each predicted with certainty
    collapsed = torch.zeros(200, k)
    collapsed[:, 0] = 20                                         # always the same class
    uniform = torch.zeros(200, k)                                # no confidence at all
    assert inception_style_score(confident_diverse, splits=1)[0] == pytest.approx(k, rel=1e-3)
    assert inception_style_score(collapsed, splits=2)[0] == pytest.approx(1.0, abs=1e-3)
    assert inception_style_score(uniform, splits=2)[0] == pytest.approx(1.0, abs=1e-6)


def test_precision_recall_on_constructed_features():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g)
    far = x + 100.0
    assert precision_recall(x, far) == {"precision": 0.0, "recall": 0.0}
    narrow = 0.01 * torch.randn(300, 8, generator=g)            # mode collapse: all fakes near the mean
    pr = precision_recall(x, narrow)
    assert pr["precision"] > 0.9 and pr["recall"] < 0.2


def test_bootstrap_interval_covers_the_estimate():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 4, generator=g).double(), (torch.randn(400, 4, generator=g) + 0.5).double()
    lo, hi = bootstrap_ci(fid_from_features, a, b, rounds=30)
    assert lo < fid_from_features(a, b) < hi
    assert 0.5 < fid_from_features(a, b) < 2.0                    # ||mu||^2 = 4 * 0.25 = 1
