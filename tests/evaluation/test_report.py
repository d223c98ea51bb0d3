"""Prompt suites and the evaluation report: held-out suites use test-split captions only; every source is
covered evenly by the first prompts; the report lays each number beside its floor."""

from __future__ import annotations

import json

from conjure.evaluation.report import interleave, read_suite, report_markdown, write_heldout_suite


def test_heldout_suite_holds_test_split_captions_only(tiny_data, tmp_path):
    from conjure.data import load_source
    path = write_heldout_suite(list(tiny_data.sources), per_source=100, path=tmp_path / "heldout.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for s in tiny_data.sources:
        test_caps = {r["captions"][0] for r in load_source(s, "test").records}
        other_caps = {r["captions"][0] for r in load_source(s).records if r["split"] != "test"}
        mine = [r["prompt"] for r in rows if r["source"] == s]
        assert len(mine) == len(set(mine)) == len(test_caps)
        assert set(mine) <= test_caps and not set(mine) & other_caps


def test_committed_heldout_suite_has_100_distinct_captions_per_source():
    rows = read_suite("heldout")
    by_source: dict[str, set] = {}
    for r in rows:
        assert r["split"] == "test"
        by_source.setdefault(r["source"], set()).add(r["prompt"])
    assert {len(v) for v in by_source.values()} == {100}


def test_interleave_covers_every_source_first():
    rows = [{"source": s, "prompt": f"{s}{i}"} for s in "abc" for i in range(5)]
    first = interleave(rows)[:3]
    assert sorted(r["source"] for r in first) == ["a", "b", "c"]
    assert sorted(r["prompt"] for r in interleave(rows)) == sorted(r["prompt"] for r in rows)


def test_report_puts_each_metric_beside_its_floor():
    one = {"fid_conjure": 10.0, "kid_conjure": 0.1, "is_conjure": 2.0, "precision_conjure": 0.5,
           "recall_conjure": 0.4, "ci95": {"fid_conjure": (9.0, 11.0)}, "n_real": 100, "n_fake": 100}
    m = {"model": "m", "suite": "heldout", "n_samples": 100, "seed": 0, "steps": None, "generation_seconds": 1.0,
         "metric_seconds": 2.0, "generated": one, "floor": {**one, "fid_conjure": 1.0},
         "class_accuracy": {"source": 0.5}, "class_accuracy_real": {"source": 0.9},
         "clip_r1_generated": {"noto": {"r1": 0.2, "n": 10}}, "clip_r1_real": {"noto": {"r1": 0.4}}}
    text = report_markdown(m)
    assert "| fid_conjure | 10 | (9.0, 11.0) | 1 |" in text
    assert "| source | 0.500 | 0.900 |" in text and "| noto | 0.200 (n=10) | 0.400 |" in text
