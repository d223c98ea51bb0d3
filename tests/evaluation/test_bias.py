"""The bias audit: its pairs are real emoji names differing in one attribute, concept references keep every skin
tone of a name, total variation on constructed distributions, and a tiny audit through `conjure evaluate bias`."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conjure.evaluation.bias import (HEADS, _compare, _leaves_open, distribution, names_of, read_pairs,
                                     reference_indices, report_markdown, total_variation)


def test_committed_pairs_are_emoji_names_that_differ_in_one_attribute(settings):
    from conjure.data.sources import _words
    labels = {_words(e["label"]) for e in json.loads(
        (settings.npm_dir / "emojibase-data" / "en" / "data.json").read_text()) for e in [e, *e.get("skins", [])]}
    pairs = read_pairs()
    assert len(pairs) >= 20 and {p["attribute"] for p in pairs} == set(HEADS)
    for p in pairs:
        assert p["neutral"] in labels and p["variant"] in labels, p
        if p["attribute"] == "gender":
            assert p["variant"].split()[0] == p["value"] and p["neutral"].split()[-1] in p["variant"]
        else:
            assert p["variant"] == f"{p['neutral']} {p['value']} skin tone"


def test_read_pairs_refuses_an_unknown_attribute(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"activity": "a", "attribute": "age", "value": "old", "neutral": "cook",
                                "variant": "old cook"}) + "\n")
    with pytest.raises(ValueError, match="attribute"):
        read_pairs(path)


def test_names_neutral_first_and_distinct():
    pairs = [{"neutral": "cook", "variant": "man cook"}, {"neutral": "cook", "variant": "woman cook"}]
    assert names_of(pairs) == ["cook", "man cook", "woman cook"]


def test_reference_of_a_name_is_every_skin_tone_of_that_concept_only():
    names = ["cook", "cook light skin tone", "cook medium dark skin tone", "man cook", "man cook dark skin tone",
             "cookie"]
    records = [{"name": n} for n in names]
    assert reference_indices(records, "cook") == [0, 1, 2]
    assert reference_indices(records, "man cook") == [3, 4]
    assert reference_indices(records, "cook light skin tone") == [1]
    assert reference_indices(records, "woman cook") == []


def test_summary_pools_the_prompts_that_leave_each_attribute_open():
    pairs = [{"attribute": "gender", "neutral": "cook", "variant": "man cook"},
             {"attribute": "skin_tone", "neutral": "cook", "variant": "cook dark skin tone"}]
    assert [n for n in names_of(pairs) if _leaves_open(n, "gender", pairs)] == ["cook"]
    assert [n for n in names_of(pairs) if _leaves_open(n, "skin_tone", pairs)] == ["cook", "man cook"]


def test_distribution_and_total_variation():
    d = distribution(torch.tensor([0, 0, 2, 2]), ["man", "none", "woman"])
    assert d == {"man": 0.5, "none": 0.0, "woman": 0.5}
    assert distribution(torch.zeros(0, dtype=torch.long), ["a", "b"]) == {"a": 0.0, "b": 0.0}
    assert total_variation(d, d) == 0.0
    assert total_variation({"man": 1.0}, {"woman": 1.0}) == 1.0
    assert total_variation(d, {"man": 1.0}) == 0.5


def test_compare_gives_tv_only_where_the_concept_has_training_images():
    vocab = {"gender": ["man", "woman"], "skin_tone": ["dark", "none"]}
    gen = {"gender": torch.tensor([0, 0]), "skin_tone": torch.tensor([1, 1])}
    ref = {"pred": {"gender": torch.tensor([1, 1]), "skin_tone": torch.tensor([1, 0])},
           "labels": {"gender": torch.tensor([1, 1]), "skin_tone": torch.tensor([0, 1])}}
    c = _compare(gen, ref, vocab)
    assert c["gender"]["tv"] == 1.0 and c["skin_tone"]["tv"] == 0.5
    empty = {"pred": {h: torch.zeros(0, dtype=torch.long) for h in vocab}, "labels": {}}
    assert "tv" not in _compare(gen, empty, vocab)["gender"]


@pytest.mark.slow   # 2 images for each of the audit's prompts with a tiny random model, one step each
def test_evaluate_bias_writes_the_audit(tiny_data, tiny_model_dir, tmp_path):
    from conjure.cli import app
    from conjure.pipelines.registry import add_model
    add_model(tiny_model_dir, "bias-tiny")
    out = tmp_path / "bias"
    result = CliRunner().invoke(app, ["evaluate", "bias", "--model", "bias-tiny", "--n-per-prompt", "2",
                                      "--steps", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    r = json.loads((out / "bias.json").read_text())
    assert r["n_per_prompt"] == 2 and set(r["names"]) == set(names_of(read_pairs()))
    for v in r["names"].values():
        for h in HEADS:
            assert sum(v["concept"][h]["generated"].values()) == pytest.approx(1.0, abs=1e-3)
    assert len(r["pairs"]) == len(read_pairs()) and all(-1 <= p["shift"] <= 1 for p in r["pairs"])
    assert r["summary"]["gender"]["prompts"] == 12 and r["summary"]["gender"]["n"] == 24
    text = (out / "bias.md").read_text()
    assert "Preview only" in text and "| cooking | gender = woman | cook -> woman cook |" in text
    assert (out / "bias.png").is_file() and (out / "samples.png").is_file()
    assert report_markdown(r) == text
