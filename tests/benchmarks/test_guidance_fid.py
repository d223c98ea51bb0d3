"""benchmarks/guidance_fid.py: the row it takes from each evaluation, the findings computed from the rows (not
fixed in advance), and its table and plot (the evaluations themselves generate thousands of images)."""

from __future__ import annotations

import pytest

from tests.benchmarks.helpers import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("guidance_fid")


def _metrics(fid: float, ci: list[float], precision: float, recall: float, r1: float) -> dict:
    return {"generated": {"fid_conjure": fid, "kid_conjure": fid / 10, "precision_conjure": precision,
                          "recall_conjure": recall, "ci95": {"fid_conjure": ci}},
            "floor": {"fid_conjure": 10.0}, "clip_r1_generated": {"a": {"r1": r1, "n": 30}, "b": {"r1": 0.0, "n": 10}},
            "class_prompt_accuracy": {"a": 0.6, "b": 0.2}, "memorisation": {"generated": {"rate": 0.5}},
            "generation_seconds": 12.0}


def _result(study, metrics: dict[float, dict]) -> dict:
    rows = [study.row(g, m) for g, m in metrics.items()]
    r = {"model": "m", "model_hash": "0123456789abcdef", "n_samples": 40, "steps": 20, "fid_floor": 10.0,
         "rows": rows, "guidance": list(metrics), "threads": 2, "machine": "test"}
    r["findings"] = study.findings(rows, 5.0)
    return r


def test_row_pools_r1_by_images_and_averages_the_sources(study):
    x = study.row(3.0, _metrics(25.0, [22.0, 28.0], 0.7, 0.4, 0.8))
    assert x["fid_ratio_to_floor"] == 2.5 and x["clip_r1_heldout"] == pytest.approx(0.6)   # (0.8*30 + 0) / 40
    assert x["class_prompt_accuracy_mean"] == pytest.approx(0.4) and x["memorisation_rate"] == 0.5


def test_findings_follow_the_numbers(study, tmp_path):
    # lowest FID at guidance 2, apart from the default's interval; recall falls and precision rises
    r = _result(study, {1.0: _metrics(30.0, [27.0, 33.0], 0.5, 0.6, 0.3),
                        2.0: _metrics(20.0, [18.0, 22.0], 0.6, 0.5, 0.5),
                        5.0: _metrics(40.0, [36.0, 44.0], 0.7, 0.3, 0.7)})
    text = " ".join(r["findings"])
    assert "Lowest fid_conjure: guidance 2 (20.00, 2.00x the floor)" in text
    assert "Highest held-out CLIP R@1: guidance 5" in text
    assert "default guidance 5, fid_conjure is 40.00: 2.00x the lowest, with the two 95% intervals apart" in text
    assert "recall falls (0.600, 0.500, 0.300)" in text and "precision rises" in text
    # the same with overlapping intervals and a recall that is not monotonic says so
    r2 = _result(study, {2.0: _metrics(20.0, [15.0, 30.0], 0.6, 0.5, 0.5),
                         5.0: _metrics(24.0, [20.0, 29.0], 0.5, 0.55, 0.4),
                         7.0: _metrics(26.0, [21.0, 31.0], 0.7, 0.3, 0.4)})
    text2 = " ".join(r2["findings"])
    assert "intervals overlapping" in text2 and "recall is not monotonic" in text2
    md = study.markdown(r)
    assert "| 2 | 20.00 | [18.00, 22.00] | 2.00 |" in md and "--guidance 1 2 5 --n 40 --threads 2" in md
    assert "| guidance | a | b |" in md and "| 5 | 0.600 | 0.200 |" in md and "| 12 |" in md
    # the best R@1 is 0.525 over 40 images (2 SE = 0.158): guidance 2 (0.375) is within it and has the lowest FID
    assert "within two binomial standard errors of the highest (at least 0.367): guidance 2, 5; of these, " \
           "guidance 2 has the lowest fid_conjure (20.00)" in text
    cached = dict(r, rows=[dict(x, generation_seconds=0.2, images_from_cache=40) for x in r["rows"]])
    assert "| cached |" in study.markdown(cached)
    part = dict(r, rows=[dict(x, images_from_cache=16) for x in r["rows"]])
    assert "| 12 (16 cached) |" in study.markdown(part)
    study.plot(r, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 10_000
