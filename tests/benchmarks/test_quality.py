"""The quality summary of benchmarks/quality.py: the issue's keys from two evaluation runs, and target verdicts
that follow the numbers (the runs themselves generate thousands of images, too long for tests)."""

from __future__ import annotations

import pytest

from tests.benchmarks.helpers import load_benchmark


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


def _run(fid: float, floor: float, r1: dict, r1_real: dict, cls: dict) -> dict:
    one = {"kid_conjure": 0.01, "ci95": {"fid_conjure": [fid - 1, fid + 1]}}
    mem = {"rate": 0.3}
    return {"model": "m", "model_hash": "h", "n_samples": 2000, "generated": {**one, "fid_conjure": fid},
            "floor": {**one, "fid_conjure": floor}, "clip_r1_generated": r1, "clip_r1_real": r1_real,
            "retrieval_baseline": {"clip_r1": {s: {"r1": 0.5} for s in r1}},
            "class_prompt_accuracy": cls, "class_prompt_accuracy_real": cls,
            "memorisation": {"generated": mem, "real_validation": mem}, "metric_seconds": 1.0,
            "generation_seconds": 2.0, "reference": "training-split", "floor_images": "validation- and test-split"}


def test_summary_weights_r1_by_images_and_judges_each_target(quality):
    heldout = _run(30.0, 10.0, {"a": {"r1": 0.2, "n": 10}}, {"a": {"r1": 0.4, "n": 10}}, {"a": 0.9, "b": 0.7})
    invocab = _run(0, 1, {"a": {"r1": 0.1, "n": 30}, "b": {"r1": 0.5, "n": 10}},
                   {"a": {"r1": 0.3, "n": 30}, "b": {"r1": 0.5, "n": 10}}, {"a": 1.0, "b": 1.0})
    q = quality.summarise(heldout, invocab)
    assert q["clip_r1_generated"] == pytest.approx(0.2) and q["clip_r1_real"] == pytest.approx(0.35)
    assert q["targets"]["fid_ratio_to_floor"] == {"value": 3.0, "target": "<= 3.0", "met": True}
    assert q["targets"]["clip_r1_generated_over_real"]["met"] is True          # 0.2 / 0.35 = 0.57
    assert q["class_accuracy"] == 0.7 and q["class_accuracy_lowest_source"] == "b"
    assert q["targets"]["class_accuracy"]["met"] is False
    worse = quality.summarise(_run(31.0, 10.0, *[heldout[k] for k in ("clip_r1_generated", "clip_r1_real",
                                                                     "class_prompt_accuracy")]), invocab)
    assert worse["targets"]["fid_ratio_to_floor"]["met"] is False
    q["machine"] = "test"
    text = quality.markdown(q)
    assert "| class-prompt accuracy, lowest source (b) | 0.700 | >= 0.8 | **missed** |" in text


def test_summary_carries_the_decoder_ceiling_beside_real_and_generated(quality):
    heldout = _run(30.0, 10.0, {"a": {"r1": 0.2, "n": 10}}, {"a": {"r1": 0.4, "n": 10}}, {"a": 0.9, "b": 0.7})
    invocab = _run(0, 1, {"a": {"r1": 0.1, "n": 30}}, {"a": {"r1": 0.3, "n": 30}}, {"a": 0.8, "b": 0.6})
    assert "decoder_ceiling" not in quality.summarise(heldout, invocab)      # older runs have none
    heldout["decoder_ceiling"] = {"fid_conjure": 14.0, "fid_conjure_ci95": [12.0, 16.0], "kid_conjure": 0.02,
                                  "class_prompt_accuracy": {"a": 0.85, "b": 0.5}}
    invocab["decoder_ceiling"] = {"class_prompt_accuracy_concepts": {"a": 0.99, "b": 0.95},
                                  "class_prompt_accuracy_concepts_vae": {"a": 0.97, "b": 0.55}}
    q = quality.summarise(heldout, invocab)
    c = q["decoder_ceiling"]
    assert c["fid_conjure"] == 14.0 and c["class_accuracy_by_source"] == {"a": 0.85, "b": 0.5}
    assert c["class_accuracy_invocab_training_images_vae"] == {"a": 0.97, "b": 0.55}
    q["machine"] = "test"
    text = quality.markdown(q)
    assert "| fid_conjure, held-out floor images (95% CI) | 10.00 | 14.00 [12.00, 16.00] | 30.00 |" in text
    assert "| b | 0.700 | 0.500 | 0.700 | 0.950 | 0.550 | 0.600 |" in text


def test_the_class_accuracy_chart_is_drawn_from_the_summary_and_linked(quality, tmp_path):
    heldout = _run(30.0, 10.0, {"a": {"r1": 0.2, "n": 10}}, {"a": {"r1": 0.4, "n": 10}}, {"a": 0.9, "b": 0.7})
    invocab = _run(0, 1, {"a": {"r1": 0.1, "n": 30}}, {"a": {"r1": 0.3, "n": 30}}, {"a": 0.8, "b": 0.6})
    heldout["decoder_ceiling"] = {"fid_conjure": 14.0, "fid_conjure_ci95": [12.0, 16.0], "kid_conjure": 0.02,
                                  "class_prompt_accuracy": {"a": 0.85, "b": 0.5}}
    heldout["evaluators"] = {"conjure-features": "0123456789abcdef", "conjure-clip": "fedcba9876543210"}
    q = quality.summarise(heldout, invocab)
    q["machine"] = "test"
    png = quality.plot_class_accuracy(q, tmp_path / "quality_m.png")
    from PIL import Image
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 400
    assert "![class-prompt accuracy per source](quality_m.png)" in quality.markdown(q)
