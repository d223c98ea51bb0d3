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


def test_allocate_splits_in_proportion_sums_exactly_and_caps():
    from conjure.evaluation.metrics import allocate
    take = allocate({"a": 300, "b": 100, "c": 50}, 200)
    assert sum(take.values()) == 200 and take["a"] > take["b"] > take["c"] > 0
    assert abs(take["a"] / take["b"] - 3) < 0.1
    assert allocate({"a": 3, "b": 1}, 10) == {"a": 3, "b": 1}        # never more than a source has


def test_reference_pair_switches_to_a_training_reference_beyond_the_held_out_pairs(tiny_data):
    from conjure.evaluation.metrics import reference_pair
    sources = list(tiny_data.sources)
    pairs = sum(min(len(_records(s, "test")), len(_records(s, "validation"))) for s in sources)
    assert pairs >= 2
    small = reference_pair(sources, pairs)
    assert (small.reference_name, small.floor_name) == ("test-split", "validation-split")
    assert {r["split"] for r in small.reference_records} == {"test"}
    assert {r["split"] for r in small.floor_records} == {"validation"}
    big = reference_pair(sources, 10_000)
    assert big.reference_name == "training-split"
    assert {r["split"] for r in big.reference_records} == {"train"}
    assert {r["split"] for r in big.floor_records} == {"validation", "test"}
    for refs in (small, big):
        assert len(refs.reference) == len(refs.floor) == sum(refs.counts.values())
        for s, k in refs.counts.items():
            assert sum(r["source"] == s for r in refs.reference_records) == k
            assert sum(r["source"] == s for r in refs.floor_records) == k
    held = sum(1 for s in sources for sp in ("validation", "test") for _ in _records(s, sp))
    assert sum(big.counts.values()) == held       # every unseen image, no more


def _records(source, split):
    from conjure.data import load_source
    return load_source(source, split).records


def test_suite_rows_follow_the_counts_and_repeat_prompts_with_new_seeds():
    from conjure.evaluation.report import suite_rows
    rows = [{"source": s, "prompt": f"{s}{i}"} for s in "ab" for i in range(3)]
    picked = suite_rows(rows, {"a": 7, "b": 2})
    assert sum(r["source"] == "a" for r in picked) == 7 and sum(r["source"] == "b" for r in picked) == 2
    assert {r["prompt"] for r in picked if r["source"] == "a"} == {"a0", "a1", "a2"}
    assert {picked[0]["source"], picked[1]["source"]} == {"a", "b"}


def test_invocab_suite_holds_training_concepts_under_their_rewording(tiny_data, tmp_path):
    import pytest
    from conjure.evaluation.report import draw_training_concepts, write_invocab_suite
    concepts = draw_training_concepts(list(tiny_data.sources), per_source=5)
    pairs = [{**c, "prompt": f"picture of {c['caption']}"} for c in concepts]
    rewordings = tmp_path / "rewordings.jsonl"
    rewordings.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    rows = [json.loads(line) for line in
            write_invocab_suite(tmp_path / "invocab.jsonl", rewordings).read_text().splitlines()]
    assert len(rows) == 5 * len(tiny_data.sources)
    for row, pair in zip(rows, pairs):
        train = {r["captions"][0]: r for r in _records(row["source"], "train")}
        assert row["split"] == "train" and row["caption"] in train and row["prompt"] == pair["prompt"]
        assert row["labels"] == train[row["caption"]]["labels"]
    rewordings.write_text(json.dumps({"source": "noto", "caption": "no such caption", "prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match="not a training caption"):
        write_invocab_suite(tmp_path / "bad.jsonl", rewordings)


def _plain(text: str) -> str:
    import re
    words = re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()
    return " ".join(w for w in words if w not in {"a", "an", "the"})


def test_committed_invocab_suite_rewords_100_training_captions_per_source():
    rows = read_suite("invocab")
    by_source: dict[str, set] = {}
    for r in rows:
        assert r["split"] == "train" and r["caption"] and _plain(r["prompt"]) != _plain(r["caption"])
        by_source.setdefault(r["source"], set()).add(r["prompt"])
    assert len(by_source) == 6 and {len(v) for v in by_source.values()} == {100}
