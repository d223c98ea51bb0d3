"""The labelled prompt set: enough prompts per category, whole template groups held out, and no
held-out prompt within MiniLM cosine 0.9 of a training prompt."""

import collections
import random
import re

import numpy as np
import yaml

from conjure.safety import dataset as ds
from conjure.safety.classifier import embed
from conjure.safety.normalize import normalize


def test_several_hundred_prompts_per_category():
    rows = ds.load_dataset()
    counts = collections.Counter(r.label for r in rows)
    for label in ds.LABELS:
        assert counts[label] >= (1000 if label == "benign" else 400), (label, counts[label])
    assert sum(r.kind == "hard_benign" for r in rows) >= 800


def test_groups_are_never_split():
    splits = collections.defaultdict(set)
    for r in ds.load_dataset():
        if not r.group.startswith("free/"):            # free-written prompts are train-only (or dropped)
            splits[r.group].add("train" if r.split == "train" else "heldout")
    assert all(len(s) == 1 for s in splits.values())
    held = {g for g, s in splits.items() if s == {"heldout"}}
    for label in ds.LABELS:
        assert any(g.startswith(label) for g in held), f"no held-out group for {label}"


def test_generation_is_deterministic():
    a, b = ds.generate(seed=0), ds.generate(seed=0)
    assert [x.prompt for x in a] == [x.prompt for x in b]


def test_train_only_categories_are_never_held_out(tmp_path):
    """A category marked train_only keeps every group in train; `count` sets how many it generates."""
    spec = {"version": 1, "categories": {
        "extra": {"label": "benign", "train_only": True, "count": 40, "slots": {"x": [str(i) for i in range(50)]},
                  "templates": [f"a {{x}} thing {i}" for i in range(8)]},
        "plain": {"label": "benign", "slots": {"x": [str(i) for i in range(50)]},
                  "templates": [f"a {{x}} item {i}" for i in range(8)]}}}
    path = tmp_path / "prompts.yaml"
    path.write_text(yaml.safe_dump(spec))
    examples = ds.generate(path)
    assert ds.train_only_categories(path) == {"extra"}
    assert sum(e.group.startswith("extra/") for e in examples) == 40
    ds.assign_groups(examples, ds.train_only_categories(path))
    assert {e.split for e in examples if e.group.startswith("extra/")} == {"train"}
    assert {e.split for e in examples if e.group.startswith("plain/")} == {"train", "heldout"}


def test_drop_near_duplicates_marks_close_heldout_prompts():
    ex = [ds.Example("a", "benign", "g/0", "benign", "train"), ds.Example("b", "benign", "g/1", "benign", "heldout"),
          ds.Example("c", "benign", "g/2", "benign", "heldout")]
    v = np.array([[1, 0], [0.95, np.sqrt(1 - 0.95**2)], [0, 1]], dtype=np.float32)
    nearest = ds.drop_near_duplicates(ex, v)
    assert [e.split for e in ex] == ["train", "dropped", "heldout"]
    assert np.allclose(nearest, [0.95, 0.0], atol=1e-6)


def _words(text):
    return set(re.findall(r"[a-z]+", text.lower()))


def test_heldout_prompts_are_not_near_copies_of_training_prompts(encoder):
    """For a sample of held-out prompts, embed the 15 training prompts that share the most words
    with each one (where any near-copy would be) and check every cosine is below 0.9."""
    rows = ds.load_dataset()
    train = [r.prompt for r in rows if r.split == "train"]
    held = random.Random(0).sample([r.prompt for r in rows if r.split == "heldout"], 40)
    train_words = [_words(t) for t in train]
    candidates = set()
    for h in held:
        hw = _words(h)
        scores = [len(hw & tw) / len(hw | tw) for tw in train_words]
        candidates.update(train[i] for i in np.argsort(scores)[-15:])
    cands = sorted(candidates)
    vh = embed([normalize(p) for p in held], encoder)
    vt = embed([normalize(p) for p in cands], encoder)
    assert ds.max_train_cosine(vh, vt).max() < ds.MAX_HELDOUT_COSINE


def test_embedding_store_embeds_only_new_prompts(tmp_path, monkeypatch):
    import numpy as np

    from conjure.config import get_settings
    from conjure.safety.train import embed_cached
    monkeypatch.setenv("CONJURE_HOME", str(tmp_path))
    get_settings.cache_clear()
    calls = []

    def fake(forms, encoder=None):
        calls.append(list(forms))
        return np.stack([np.full(384, len(f), dtype=np.float32) for f in forms])
    try:
        a = embed_cached(["a cat", "a dog on a hill"], embed_fn=fake)
        b = embed_cached(["A  CAT", "a red fox", "a dog on a hill"], embed_fn=fake)   # "A  CAT" normalises to "a cat"
    finally:
        get_settings.cache_clear()
    assert calls == [["a cat", "a dog on a hill"], ["a red fox"]]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[2]) and b[1][0] == len("a red fox")
