"""The dataset cache: deterministic concept-grouped splits, atomic builds, attribution, loading."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from conjure.config import Settings
from conjure.data import SOURCES, build_source, load_source, load_sources, split_of
from conjure.data.build import SPLIT_FRACTIONS, SPLITS, resize_images, write_attribution
from conjure.data.sources import Item, SourceInfo


def _groups_to_splits(records) -> dict[str, set[str]]:
    out = defaultdict(set)
    for r in records:
        out[r["group"]].add(r["split"])
    return out


def test_split_of_is_deterministic():
    groups = [f"emoji:{i:x}" for i in range(200)]
    assert [split_of(g) for g in groups] == [split_of(g) for g in groups]
    assert split_of("icon:heart") == split_of("icon:heart") in SPLITS


def test_split_fractions_follow_the_configured_shares():
    counts = Counter(split_of(f"group-{i}") for i in range(4000))
    for split, share in zip(SPLITS, SPLIT_FRACTIONS):
        assert abs(counts[split] / 4000 - share) < 0.02, counts


def test_official_test_items_stay_in_test_and_official_train_never_leaks_into_it():
    assert {split_of(f"fashion:t10k:{i}", {"official_split": "test"}) for i in range(100)} == {"test"}
    train = Counter(split_of(f"fashion:train:{i}", {"official_split": "train"}) for i in range(1000))
    assert set(train) == {"train", "validation"} and train["train"] > 900


def test_built_caches_keep_every_group_in_one_split(tiny_data):
    """Across all sources together: noto and twemoji share emoji groups, so a concept may not leak."""
    records = [r for s in tiny_data.sources for r in load_source(s, settings=tiny_data.settings).records]
    assert all(r["split"] == split_of(r["group"], r["labels"]) for r in records)
    assert all(len(splits) == 1 for splits in _groups_to_splits(records).values())
    shared = {r["group"] for r in records if r["source"] == "noto"} & \
             {r["group"] for r in records if r["source"] == "twemoji"}
    assert all(g.startswith("emoji:") for g in shared)


@pytest.fixture
def synthetic_source(monkeypatch):
    """A fake registered source: 40 concepts with 5 variants each, one official test concept."""
    def build(settings):
        for i in range(200):
            img = np.full((64, 64, 3), 255, np.uint8)
            img[20:40, 20:40] = i
            labels = {"official_split": "test"} if i // 5 == 0 else {}
            yield Item(image=img, captions=[f"thing {i // 5} variant {i % 5}"], name=f"thing {i // 5}",
                       source="synthetic", licence="CC0-1.0", group=f"thing:{i // 5}", labels=labels)
    monkeypatch.setitem(SOURCES, "synthetic", SourceInfo("synthetic", "icon", "CC0-1.0", "synthetic (tests)",
                                                         "nothing to install", build))
    return "synthetic"


def test_synthetic_groups_never_span_two_splits(tmp_path, synthetic_source):
    settings = Settings(home=tmp_path)
    build_source(synthetic_source, settings=settings)
    records = load_source(synthetic_source, settings=settings).records
    by_group = _groups_to_splits(records)
    assert len(by_group) == 40 and all(len(s) == 1 for s in by_group.values())
    assert by_group["thing:0"] == {"test"}                 # official test split respected
    assert all(by_group[f"thing:{k}"] == {split_of(f"thing:{k}")} for k in range(1, 40))


def test_build_writes_meta_and_rebuilds_atomically(tmp_path, synthetic_source):
    settings = Settings(home=tmp_path)
    path = build_source(synthetic_source, settings=settings, limit=30)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["count"] == 30 and sum(meta["splits"].values()) == 30
    assert meta["image_shape"] == [64, 64, 3] and meta["licence"] == "CC0-1.0"
    assert np.load(path / "images.npy").shape == (30, 64, 64, 3)
    assert len((path / "items.jsonl").read_text().splitlines()) == 30
    path = build_source(synthetic_source, settings=settings, limit=10)   # replaces the previous build
    assert json.loads((path / "meta.json").read_text())["count"] == 10
    assert len(load_source(synthetic_source, settings=settings)) == 10
    assert sorted(p.name for p in settings.data_dir.iterdir()) == ["ATTRIBUTION.md", "synthetic"]


def test_unknown_source_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown data source 'nope'; choose from: noto, twemoji"):
        build_source("nope", settings=Settings(home=tmp_path))


def test_attribution_lists_the_built_sources(tiny_data):
    text = write_attribution(tiny_data.settings).read_text()
    assert (tiny_data.settings.data_dir / "ATTRIBUTION.md").is_file()
    for source in tiny_data.sources:
        info = SOURCES[source]
        assert f"| {source} | {info.package} | {info.licence} | {tiny_data.limit} |" in text
    assert "| lucide |" not in text and "| bootstrap |" not in text   # not built here
    assert "CC BY 4.0" in text   # Twemoji's licence terms are named in full


def test_load_source_filters_by_split(tiny_data):
    whole = load_source("noto", settings=tiny_data.settings)
    parts = {s: load_source("noto", s, settings=tiny_data.settings) for s in SPLITS}
    assert sum(len(p) for p in parts.values()) == len(whole)
    for split, part in parts.items():
        assert all(r["split"] == split for r in part.records)
        assert part.images.shape[0] == len(part)
    train_idx = [i for i, r in enumerate(whole.records) if r["split"] == "train"]
    assert np.array_equal(parts["train"].images, whole.images[train_idx])


def test_load_source_that_is_not_built_says_how_to_build_it(tiny_data):
    with pytest.raises(FileNotFoundError, match="conjure data build --source lucide"):
        load_source("lucide", settings=tiny_data.settings)


def test_load_sources_concatenates_and_resizes(tiny_data):
    d = load_sources(["noto", "mdi"], settings=tiny_data.settings, size=32)
    assert d.images.shape == (2 * tiny_data.limit, 32, 32, 3) and d.images.dtype == np.uint8
    assert [r["source"] for r in d.records] == ["noto"] * tiny_data.limit + ["mdi"] * tiny_data.limit


def test_load_sources_resizes_fashion_mnist_to_64(fashion_data, tiny_data):
    d = load_sources(["fashion_mnist", "noto"], settings=fashion_data.settings, size=64)
    assert d.images.shape == (fashion_data.limit + tiny_data.limit, 64, 64, 3)
    raw = load_source("fashion_mnist", settings=fashion_data.settings).images
    assert raw.shape[1:] == (28, 28, 3)
    assert np.abs(d.images[:fashion_data.limit].astype(float).mean() - raw.astype(float).mean()) < 5


def test_resize_images_keeps_images_already_at_size():
    imgs = np.random.default_rng(0).integers(0, 255, (3, 28, 28, 3), dtype=np.uint8)
    assert resize_images(imgs, 28) is imgs
    big = resize_images(imgs, 64)
    assert big.shape == (3, 64, 64, 3) and big.dtype == np.uint8
