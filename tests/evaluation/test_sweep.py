"""The guidance study: diversity as mean pairwise feature distance, the labelled grid, and a whole (tiny) sweep
that writes its numbers, grid and plot."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from conjure.evaluation.sweep import guidance_sweep, labelled_grid, mean_pairwise_distance


def test_mean_pairwise_distance_over_unordered_pairs():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(x) == pytest.approx((5 + 0 + 5) / 3)
    assert mean_pairwise_distance(torch.ones(4, 3)) == 0.0
    with pytest.raises(ValueError, match="two"):
        mean_pairwise_distance(torch.ones(1, 3))


def test_labelled_grid_has_one_tile_per_seed_and_scale_and_greys_withheld_tiles():
    red = Image.new("RGB", (64, 64), "red")
    grid = labelled_grid([[red, None], [red, red]], ["w=1", "w=7"], ["seed 0", "seed 1"], tile=50)
    assert grid.size == (56 + 2 * 50, 20 + 2 * 50)
    assert grid.getpixel((56 + 25, 20 + 25)) == (255, 0, 0)
    assert grid.getpixel((56 + 75, 20 + 25)) == (187, 187, 187)


def test_sweep_refuses_one_seed_and_scales_out_of_range(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        guidance_sweep("conjure-tiny", "red apple", [1.0], seeds=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="between 0 and"):
        guidance_sweep("conjure-tiny", "red apple", [1.0, 99.0], seeds=2, out_dir=tmp_path)


@pytest.fixture(scope="module")
def sweep_model(tiny_model_dir) -> str:
    from conjure.pipelines.registry import add_model
    return add_model(tiny_model_dir, "sweep-tiny").name


def test_sweep_writes_numbers_grid_and_plot(sweep_model, tmp_path):
    r = guidance_sweep(sweep_model, "red apple", [1.0, 6.0], seeds=3, steps=2, out_dir=tmp_path)
    assert [p["guidance"] for p in r["points"]] == [1.0, 6.0]
    for p in r["points"]:
        assert len(p["clip_scores"]) == 3 and 0 <= p["clip_score"] <= 100 and p["diversity"] > 0
    assert r["points"][0] != r["points"][1]                      # guidance changed the images
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(r))
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (56 + 3 * 96, 20 + 2 * 96)
        info = json.loads(grid.text["conjure-study"])
        assert (info["prompt"], info["seeds"], info["guidance"]) == ("red apple", 3, [1.0, 6.0])
    with Image.open(tmp_path / "plot.png") as plot:
        assert plot.size[0] > 400
