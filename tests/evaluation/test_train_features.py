"""The feature classifier's training loop (on constructed data), its shift augmentation, and the judge-v2 driver's
pack/unpack round trip and selection rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conjure.evaluation import train as train_mod
from conjure.evaluation.data import ImageSet, random_shift
from conjure.evaluation.recipe import FeatureRecipe
from tests.benchmarks.helpers import load_script

REPO = Path(__file__).resolve().parents[2]


def reference_shift(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """The plain per-image crop that random_shift replaces with one gather."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, value=255)
    offs = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=gen)
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(offs.tolist())])


def test_random_shift_is_the_per_image_crop_and_fills_white():
    x = torch.randint(0, 255, (9, 3, 16, 20), dtype=torch.uint8)        # never 255 inside the image
    got = random_shift(x, 3, torch.Generator().manual_seed(4))
    assert torch.equal(got, reference_shift(x, 3, torch.Generator().manual_seed(4)))
    assert got.shape == x.shape and got.dtype == torch.uint8
    assert (got == 255).any()                                           # some image moved: white came in
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)


def _two_sources(n: int, seed: int) -> ImageSet:
    """Source 'a' dark squares, source 'b' light ones: a head that cannot learn this is broken."""
    g = torch.Generator().manual_seed(seed)
    dark = torch.randint(0, 80, (n, 3, 64, 64), generator=g, dtype=torch.uint8)
    light = torch.randint(170, 250, (n, 3, 64, 64), generator=g, dtype=torch.uint8)
    records = [{"source": "a", "labels": {}}] * n + [{"source": "b", "labels": {}}] * n
    return ImageSet(torch.cat([dark, light]), records)


@pytest.fixture
def constructed_data(monkeypatch):
    sets = {"train": _two_sources(96, 0), "validation": _two_sources(32, 1), "test": _two_sources(32, 2)}
    monkeypatch.setattr(train_mod, "load_image_set", lambda sources, split, **kw: sets[split])
    return sets


def test_train_features_learns_stops_resumes_and_writes_a_card(tmp_path, constructed_data):
    recipe = FeatureRecipe(name="conjure-features-test", sources=["a", "b"], heads=["source"], preset="tiny",
                           fashion_per_epoch=0, epochs=3, batch=32, lr=3e-3, save_every_steps=2, threads=1)
    run = tmp_path / "run"
    run.mkdir()
    # a zero time budget stops after the first step with a checkpoint, and no model folder
    assert train_mod.train_eval_network(recipe, run, max_minutes=0) is None
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=True)
    assert int(state["step"]) == 1 and not (run / "model").exists()
    # resuming finishes the remaining steps
    out = train_mod.train_eval_network(recipe, run)
    assert out == run / "model"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 * (192 // 32)
    assert metrics["validation"]["source"]["accuracy"] >= 0.9 and metrics["test"]["source"]["n"] == 64
    assert metrics["compute"].startswith("GPU" if torch.cuda.is_available() else "CPU")
    card = (out / "README.md").read_text()
    assert metrics["weights_sha256"] in card and f"**Compute:** {metrics['compute']}" in card
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == metrics["steps"]


def _driver():
    return load_script("recipes/judge-v2/train_on_gpu.py")


def test_judge_v2_pack_and_unpack_give_back_the_same_files(tmp_path):
    driver = _driver()
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8).repeat(3, axis=3)    # equal channels: packed as one
    c = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    for name, arr in (("grey", g), ("colour", c)):
        (data / name).mkdir(parents=True)
        np.save(data / name / "images.npy", arr)
        (data / name / "items.jsonl").write_text(f'{{"source": "{name}"}}\n' * len(arr))
        (data / name / "meta.json").write_text("{}")
    driver.pack(data, tmp_path / "packed", sources=["grey", "colour"])
    driver.unpack(tmp_path / "packed", tmp_path / "out", sources=["grey", "colour"])
    for name in ("grey", "colour"):
        for f in ("images.npy", "items.jsonl", "meta.json"):
            assert (tmp_path / "out" / name / f).read_bytes() == (data / name / f).read_bytes(), (name, f)


def test_judge_v2_rule_takes_the_best_mean_validation_and_breaks_ties_to_the_smaller_net():
    select = _driver().select

    def cand(preset, *accs):
        return {"preset": preset, "validation": {f"h{i}": {"accuracy": a} for i, a in enumerate(accs)},
                "test": {"h0": {"accuracy": 1.0}}}          # test is never read by the rule
    assert select({"w": cand("wide", 0.7, 0.7), "s": cand("small", 0.8, 0.7)}) == "s"
    assert select({"w": cand("wide", 0.8, 0.7), "b": cand("base", 0.7, 0.8)}) == "b"
    assert select({"w": cand("wide", 0.9, 0.7), "b": cand("base", 0.7, 0.8)}) == "w"


def test_the_committed_judge_is_the_rule_s_pick_and_its_hash_is_on_its_card():
    cands = json.loads((REPO / "recipes" / "judge-v2" / "candidates.json").read_text())
    assert _driver().select(cands["candidates"]) == cands["winner"] == "conjure-features-wide-e80"
    folder = REPO / "models" / "conjure-features"
    from conjure.training.cache import file_hash
    sha = file_hash(folder / "model.safetensors")
    assert sha == cands["candidates"][cands["winner"]]["weights_sha256"]
    assert sha in (folder / "README.md").read_text()
    assert json.loads((folder / "config.json").read_text())["widths"] == [64, 128, 256, 512]


def test_features_of_caches_on_disk_under_the_weights_and_the_images(tmp_path, monkeypatch):
    from conjure.evaluation import metrics
    from conjure.models.features import FEATURE_PRESETS, FeatureNet, FeatureNetConfig
    torch.manual_seed(0)
    net = FeatureNet(FeatureNetConfig(**FEATURE_PRESETS["tiny"], heads={"source": ["a", "b"]})).eval()
    images = torch.randint(0, 256, (7, 3, 64, 64), dtype=torch.uint8)
    plain = metrics.features_of(net, images, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())                      # a network that does not know its hash: no cache
    net.weights_id = "0123456789abcdef"
    first = metrics.features_of(net, images, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("features-0123456789abcdef-")
    monkeypatch.setattr(FeatureNet, "forward", lambda self, x: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = metrics.features_of(net, images, cache_dir=tmp_path)   # from disk: the network is not called
    assert torch.equal(first, plain) and torch.equal(again, first) and again.dtype == torch.float64
    monkeypatch.undo()
    metrics.features_of(net, images.flip(0), cache_dir=tmp_path)    # other images: another file
    assert len(list(tmp_path.iterdir())) == 2
