"""The retrieval baseline and the memorisation rate: constructed cases (copies of training images score about 1,
held-out images score low), nearest-caption retrieval, and both in the evaluation report."""

from __future__ import annotations

import json

import pytest
import torch

from conjure.evaluation.baselines import memorisation_rate, nearest_captions
from conjure.evaluation.report import report_markdown


def _clouds(seed: int = 0, d: int = 16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(400, d, generator=g), torch.randn(100, d, generator=g), torch.randn(100, d, generator=g))


def test_copies_of_training_images_are_memorised():
    train, test, _ = _clouds()
    copies = train[:50] + 1e-4 * torch.randn(50, train.shape[1], generator=torch.Generator().manual_seed(1))
    r = memorisation_rate(copies, train, test)
    assert r["rate"] == 1.0 and r["near_copy_rate"] == 1.0 and r["median_ratio"] < 0.01
    assert (r["n"], r["n_train"], r["n_test"]) == (50, 400, 100)


def test_test_images_themselves_are_not_memorised():
    train, test, _ = _clouds()
    r = memorisation_rate(test, train, test)
    assert r["rate"] == 0.0 and r["near_copy_rate"] == 0.0


def test_unseen_images_sit_at_the_rate_the_reference_sizes_give():
    # train and test drawn alike and equally big: a fresh image is nearer to either with probability 1/2
    g = torch.Generator().manual_seed(2)
    train, test, fresh = (torch.randn(300, 8, generator=g) for _ in range(3))
    r = memorisation_rate(fresh, train, test)
    assert 0.35 < r["rate"] < 0.65 and r["near_copy_rate"] < 0.05
    # four times more training images: a fresh image is more often nearer to one of them (about 4/5)
    r4 = memorisation_rate(fresh, torch.cat([train, torch.randn(900, 8, generator=g)]), test)
    assert r4["rate"] > r["rate"] + 0.15


def test_memorisation_rate_refuses_an_empty_set():
    train, test, _ = _clouds()
    with pytest.raises(ValueError, match="non-empty"):
        memorisation_rate(torch.zeros(0, 16), train, test)


def test_nearest_captions_by_cosine():
    captions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    prompts = torch.tensor([[0.1, 5.0, 0.0], [0.0, 0.2, 0.1], [3.0, 0.0, 2.9]])   # length does not matter
    assert nearest_captions(prompts, captions).tolist() == [1, 1, 0]


def test_nearest_captions_with_minilm_vectors_find_the_same_concept():
    from conjure.evaluation.clip import text_vectors
    captions = ["red apple", "blue car emoji", "an emoji of a dog", "house icon"]
    near = nearest_captions(text_vectors(["a red apple", "dog emoji", "home"]), text_vectors(captions))
    assert near.tolist() == [0, 2, 3]


def _metrics_with_baselines() -> dict:
    one = {"fid_conjure": 10.0, "kid_conjure": 0.1, "is_conjure": 2.0, "precision_conjure": 0.5,
           "recall_conjure": 0.4, "ci95": {}, "n_real": 100, "n_fake": 100}
    mem = {"rate": 0.25, "near_copy_rate": 0.0, "median_ratio": 1.1, "n": 100, "n_train": 900, "n_test": 120}
    return {"model": "m", "suite": "heldout", "n_samples": 100, "seed": 0, "steps": None, "generation_seconds": 1.0,
            "metric_seconds": 2.0, "generated": one, "floor": one,
            "class_accuracy": {"source": 0.5}, "class_accuracy_real": {"source": 0.9},
            "clip_r1_generated": {"noto": {"r1": 0.2, "n": 10}}, "clip_r1_real": {"noto": {"r1": 0.4}},
            "retrieval_baseline": {"n_train": 900, "same_caption_share": 0.0, "class_accuracy": {"source": 0.7},
                                   "clip_r1": {"noto": {"r1": 0.3}}},
            "memorisation": {"generated": mem, "real_validation": {**mem, "rate": 0.8}}}


def test_report_shows_the_retrieval_baseline_and_memorisation_beside_each_target():
    text = report_markdown(_metrics_with_baselines())
    assert "| source | 0.500 | 0.900 | 0.700 |" in text
    assert "| noto | 0.200 (n=10) | 0.400 | 0.300 |" in text
    assert "| generated | 0.250 | 0.000 | 1.100 | 100 |" in text and "| real validation | 0.800 |" in text
    assert "900 training images, 120 test images" in text
    assert "guidance model default" in text and "Where the `source` head puts" not in text


def test_report_shows_the_guidance_and_where_source_checked_images_went():
    m = {**_metrics_with_baselines(), "guidance": 3.0, "class_prompt_accuracy": {"lucide": 0.25},
         "class_prompt_accuracy_real": {"lucide": 0.5},
         "source_confusion": {"generated": {"lucide": {"tabler": 0.6, "lucide": 0.25, "mdi": 0.1, "noto": 0.05}},
                              "real": {"lucide": {"lucide": 0.5, "tabler": 0.5}}}}
    text = report_markdown(m)
    assert "guidance 3.0)" in text and "| lucide | 0.250 | 0.500 |" in text
    assert "| lucide | tabler 0.60, lucide 0.25, mdi 0.10 | lucide 0.50, tabler 0.50 |" in text


@pytest.mark.slow   # generates 8 images with a tiny random model and loads both evaluation networks
def test_evaluate_writes_both_baselines(tiny_data, tiny_model_dir, tmp_path, monkeypatch):
    from conjure.evaluation import report
    from conjure.pipelines.registry import add_model
    add_model(tiny_model_dir, "baselines-tiny")
    monkeypatch.setattr(report, "SUITES_DIR", tmp_path / "suites")
    report.write_heldout_suite(list(tiny_data.sources), per_source=100, path=tmp_path / "suites" / "tiny.jsonl")
    m = report.evaluate("baselines-tiny", "tiny", 8, tmp_path / "out", steps=2)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["memorisation"] == m["memorisation"]
    for name in ("generated", "real_validation"):
        assert 0.0 <= m["memorisation"][name]["rate"] <= 1.0
    ret = m["retrieval_baseline"]
    assert ret["n_train"] > 0 and set(ret["clip_r1"]) == set(m["clip_r1_generated"])
    assert set(ret["class_accuracy"]) <= set(m["class_accuracy"]) and "source" in ret["class_accuracy"]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Memorisation" in text
    c = m["decoder_ceiling"]                     # the tiny model's VAE round trip, beside the floor
    assert c["fid_conjure"] > 0 and c["fid_conjure_ci95"][0] <= c["fid_conjure"] <= c["fid_conjure_ci95"][1]
    assert set(c["class_prompt_accuracy"]) == set(m["class_prompt_accuracy_real"])
    assert set(c["class_prompt_accuracy_concepts_vae"]) == set(c["class_prompt_accuracy_concepts"])
    assert "## The decoder's ceiling" in text and f"| fid_conjure | " in text


@pytest.mark.slow   # generates 8 images with a tiny random model and loads both evaluation networks
def test_evaluate_on_an_invocab_suite_measures_real_training_images_of_the_same_concepts(
        tiny_data, tiny_model_dir, tmp_path, monkeypatch):
    from conjure.evaluation import report
    from conjure.pipelines.registry import add_model
    add_model(tiny_model_dir, "invocab-tiny")
    monkeypatch.setattr(report, "SUITES_DIR", tmp_path / "suites")
    (tmp_path / "suites").mkdir()
    pairs = [{**c, "prompt": f"picture of {c['caption']}"}
             for c in report.draw_training_concepts(list(tiny_data.sources), per_source=3)]
    rewordings = tmp_path / "rewordings.jsonl"
    rewordings.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    report.write_invocab_suite(tmp_path / "suites" / "inv.jsonl", rewordings)
    m = report.evaluate("invocab-tiny", "inv", 8, tmp_path / "out", steps=2)
    assert m["clip_r1_real_split"] == "train" and m["n_samples"] == sum(m["per_source"].values())
    assert {v["n"] for v in m["clip_r1_real"].values()} == {3}        # one real image per suite prompt
    drawn = {s for s, k in m["per_source"].items() if k}
    assert set(m["class_accuracy_by_source"]) == drawn
    assert set(m["class_prompt_accuracy"]) <= drawn and len(m["class_prompt_accuracy"]) >= 2
    assert all(0.0 <= v <= 1.0 for v in m["class_prompt_accuracy"].values())
    text = (tmp_path / "out" / "report.md").read_text()
    assert "real training images" in text and "## Class-prompt accuracy per source" in text


def test_generated_images_are_cached_and_a_stopped_run_resumes(tiny_model_dir, tmp_path, monkeypatch):
    from conjure.evaluation import report
    from conjure.pipelines.registry import add_model
    from conjure.pipelines.text_to_image import TextToImagePipeline
    add_model(tiny_model_dir, "cache-tiny")
    prompts = ["red apple", "house icon", "cat face"]
    stats = {}
    first, h = report.generate("cache-tiny", prompts, 5, 2, batch=2, cache=tmp_path, stats=stats)
    assert first.shape == (3, 3, 64, 64) and first.dtype == torch.uint8 and stats == {"from_cache": 0}
    (cached,) = tmp_path.glob("*.npy")
    calls = []
    real = TextToImagePipeline.generate_batch
    monkeypatch.setattr(TextToImagePipeline, "generate_batch",
                        lambda self, reqs, jobs: calls.append(len(reqs)) or real(self, reqs, jobs))
    again, h2 = report.generate("cache-tiny", prompts, 5, 2, batch=2, cache=tmp_path, stats=stats)
    assert calls == [] and h2 == h and torch.equal(again, first)          # measured again, not regenerated
    assert stats == {"from_cache": 3}
    import numpy as np
    np.save(cached, np.load(cached)[:2])                                     # as if stopped after one batch
    resumed, _ = report.generate("cache-tiny", prompts, 5, 2, batch=2, cache=tmp_path, stats=stats)
    assert calls == [1] and torch.equal(resumed, first)                      # only the missing image, same seed
    assert stats == {"from_cache": 2}


def test_generated_images_follow_the_guidance_asked_for_and_cache_apart(tiny_model_dir, tmp_path):
    from conjure.evaluation import report
    from conjure.pipelines.components import ModelSpec
    from conjure.pipelines.registry import add_model
    add_model(tiny_model_dir, "guided-tiny")
    default = ModelSpec.read(tiny_model_dir).default_guidance
    prompts = ["red apple", "house icon"]
    plain, _ = report.generate("guided-tiny", prompts, 5, 2, cache=tmp_path)
    same, _ = report.generate("guided-tiny", prompts, 5, 2, cache=tmp_path, guidance=default)
    assert len(list(tmp_path.glob("*.npy"))) == 1 and torch.equal(same, plain)   # the default keeps its key
    low, _ = report.generate("guided-tiny", prompts, 5, 2, cache=tmp_path, guidance=1.0)
    high, _ = report.generate("guided-tiny", prompts, 5, 2, cache=tmp_path, guidance=default + 4)
    assert len(list(tmp_path.glob("*.npy"))) == 3
    assert not torch.equal(low, plain) and not torch.equal(high, plain) and not torch.equal(low, high)


def test_evaluate_refuses_a_guidance_out_of_range_before_any_work(tmp_path):
    from typer.testing import CliRunner
    from conjure.cli import app
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "conjure-tiny", "--guidance", "99", "--out", str(out)])
    assert result.exit_code == 2 and "guidance must be between 0 and 30" in result.stderr and not out.exists()
    result = CliRunner().invoke(app, ["evaluate", "bias", "--guidance", "3", "--out", str(out)])
    assert result.exit_code == 2 and "--guidance applies to suite evaluations" in result.stderr and not out.exists()


@pytest.mark.slow   # loads both evaluation networks
def test_evaluate_measures_images_made_elsewhere(tiny_data, tmp_path, monkeypatch):
    """images= measures given images (one per suite row) without loading a model; the wrong shape is refused."""
    import torch
    from conjure.evaluation import report
    monkeypatch.setattr(report, "SUITES_DIR", tmp_path / "suites")
    report.write_heldout_suite(list(tiny_data.sources), per_source=100, path=tmp_path / "suites" / "tiny.jsonl")
    with pytest.raises(ValueError, match="one per suite row"):
        report.evaluate("made-elsewhere", "tiny", 8, tmp_path / "bad", images=torch.zeros(8, 3, 32, 32, dtype=torch.uint8))
    given = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    m = report.evaluate("made-elsewhere", "tiny", 8, tmp_path / "out", images=given)
    assert m["model"] == "made-elsewhere" and m["model_hash"] == "external" and m["n_samples"] == 8
    assert m["generated"]["n_fake"] == 8 and m["metric_seconds"] > 0
    from conjure.config import BUILTIN_MODELS_DIR
    from conjure.training.cache import file_hash
    clip_sha = file_hash(BUILTIN_MODELS_DIR / "conjure-clip" / "model.safetensors")
    assert m["evaluators"]["conjure-clip"] == clip_sha[:16] and len(m["evaluators"]["conjure-features"]) == 16
    assert clip_sha[:16] in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("args", [["--n", "1"], ["--threads", "0"]])
def test_evaluate_refuses_bad_counts_and_writes_nothing(tmp_path, args):
    from typer.testing import CliRunner
    from conjure.cli import app
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "conjure-tiny", *args, "--out", str(out)])
    assert result.exit_code == 2 and "--threads at least 1" in result.output
    assert not out.exists()


def test_source_confusion_counts_where_the_source_head_puts_each_checked_source():
    from types import SimpleNamespace
    from conjure.evaluation.report import source_confusion
    names = ["bootstrap", "lucide", "tabler"]

    class Judge:                                   # "features" are the logits themselves: argmax is the class
        config = SimpleNamespace(heads={"source": names})

        def __call__(self, x):
            return x.float()

        def logits(self, f):
            return {"source": f}
    onehot = torch.eye(3)
    images = torch.stack([onehot[2], onehot[2], onehot[1], onehot[0], onehot[0], onehot[1], onehot[1]])
    records = [{"source": "lucide"}] * 4 + [{"source": "bootstrap"}, {"source": "mdi"}, {"source": "noto"}]
    out = source_confusion(Judge(), images, records, batch=3)
    assert set(out) == {"lucide", "bootstrap"}          # mdi and noto are judged by their own heads
    assert out["lucide"] == {"tabler": 0.5, "bootstrap": 0.25, "lucide": 0.25}
    assert list(out["lucide"])[0] == "tabler" and out["bootstrap"] == {"bootstrap": 1.0}
    assert source_confusion(Judge(), images[-2:], records[-2:]) == {}


def test_a_vae_round_trip_through_conjure_tiny_keeps_real_images_and_a_random_vae_does_not(tiny_data, tiny_model_dir):
    """The ceiling's round trip is the model's own encode and decode: the trained VAE gives the images back
    within its validation error, the untrained test VAE does not; a model without a conjure VAE has none."""
    from conjure.evaluation.data import load_image_set
    from conjure.evaluation.report import vae_round_trip
    from conjure.pipelines.registry import add_model
    real = load_image_set(list(tiny_data.sources), "validation").images[:24]
    trained = vae_round_trip("conjure-tiny", real)
    assert trained.shape == real.shape and trained.dtype == torch.uint8
    err = (trained.float() - real.float()).abs().mean() / 127.5          # in [-1, 1] units, like val_l1
    assert err < 0.1
    add_model(tiny_model_dir, "roundtrip-tiny")
    assert (vae_round_trip("roundtrip-tiny", real).float() - real.float()).abs().mean() / 127.5 > 3 * err


def test_vae_round_trip_is_none_for_an_added_diffusers_folder(tiny_sd_dir):
    from conjure.evaluation.report import vae_round_trip
    from conjure.pipelines.registry import add_model
    add_model(tiny_sd_dir, "roundtrip-sd")
    assert vae_round_trip("roundtrip-sd", torch.zeros(2, 3, 64, 64, dtype=torch.uint8)) is None


def test_report_reads_generated_numbers_against_the_decoder_ceiling():
    from conjure.evaluation.report import report_markdown
    one = {"fid_conjure": 30.0, "kid_conjure": 2.0, "is_conjure": 2.0, "precision_conjure": 0.5,
           "recall_conjure": 0.4, "ci95": {"fid_conjure": (25.0, 35.0)}, "n_real": 100, "n_fake": 100}
    m = {"model": "m", "suite": "heldout", "n_samples": 100, "seed": 0, "steps": None, "generation_seconds": 1.0,
         "metric_seconds": 2.0, "generated": one, "floor": {**one, "fid_conjure": 10.0, "kid_conjure": 0.5},
         "class_accuracy": {"source": 0.5}, "class_accuracy_real": {"source": 0.9},
         "class_prompt_accuracy": {"lucide": 0.2}, "class_prompt_accuracy_real": {"lucide": 0.5},
         "decoder_ceiling": {"fid_conjure": 14.0, "kid_conjure": 0.75, "class_prompt_accuracy": {"lucide": 0.4},
                             "n_concept_images": 3, "class_prompt_accuracy_concepts": {"lucide": 0.6},
                             "class_prompt_accuracy_concepts_vae": {"lucide": 0.3}},
         "clip_r1_generated": {"noto": {"r1": 0.2, "n": 10}}, "clip_r1_real": {"noto": {"r1": 0.4}}}
    text = report_markdown(m)
    assert "| fid_conjure | 10.00 | 14.00 | 30.00 |" in text and "| kid_conjure | 0.500 | 0.750 | 2.000 |" in text
    assert "| class-prompt accuracy, lucide | 0.500 | 0.400 | 0.200 |" in text
    assert "(3 images)" in text and "| lucide | 0.600 | 0.300 | 0.200 |" in text
    assert "decoder's ceiling" not in report_markdown({k: v for k, v in m.items() if k != "decoder_ceiling"})
