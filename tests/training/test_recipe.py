"""Recipes: the YAML files under recipes/ read into dataclasses, with clear errors."""

from __future__ import annotations

import pytest

from conjure.config import REPO_ROOT
from conjure.data import SOURCES
from conjure.models.unet import UNET_PRESETS
from conjure.training.recipe import Recipe, VAERecipe, load_any_recipe

RECIPES = REPO_ROOT / "recipes"


def test_the_conjure_tiny_recipe():
    r = Recipe.load(RECIPES / "conjure-tiny.yaml")
    assert (r.name, r.unet_preset, r.image_size, r.max_tokens, r.prediction_type) == \
           ("conjure-tiny", "tiny", 64, 16, "v_prediction")
    assert r.to_dict()["batch"] == 128


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_recipe_loads_and_names_known_parts(path):
    r = load_any_recipe(path)
    assert set(getattr(r, "sources", [])) <= set(SOURCES)   # the safety classifier trains on text alone
    if isinstance(r, Recipe):
        assert r.unet_preset in UNET_PRESETS
        assert (REPO_ROOT / r.sample_prompts).is_file()


def test_overrides_apply_and_none_is_ignored():
    assert Recipe.load(RECIPES / "conjure-tiny.yaml", images=500).images == 500
    assert Recipe.load(RECIPES / "conjure-tiny.yaml", images=None).images == 2_000_000
    assert load_any_recipe(RECIPES / "conjure-tiny.yaml", images=64).images == 64


def test_name_defaults_to_the_file_name(tmp_path):
    (tmp_path / "my-run.yaml").write_text("unet_preset: test\n")
    r = Recipe.load(tmp_path / "my-run.yaml")
    assert r.name == "my-run" and r.unet_preset == "test"


def test_unknown_keys_are_refused_by_name(tmp_path):
    (tmp_path / "r.yaml").write_text("lr: 0.001\nlearning_rate: 0.1\nbtach: 3\n")
    with pytest.raises(ValueError, match="unknown recipe keys in .*: btach, learning_rate"):
        Recipe.load(tmp_path / "r.yaml")


def test_vae_recipes_are_recognised_by_kind():
    r = load_any_recipe(RECIPES / "conjure-tiny-vae.yaml")
    assert isinstance(r, VAERecipe) and r.channels == [16, 64, 128] and r.to_dict()["kind"] == "vae"


def test_unknown_kind_and_missing_file(tmp_path):
    (tmp_path / "r.yaml").write_text("kind: gan\n")
    with pytest.raises(ValueError, match="unknown recipe kind 'gan'"):
        load_any_recipe(tmp_path / "r.yaml")
    with pytest.raises(ValueError, match="recipe file not found"):
        load_any_recipe(tmp_path / "missing.yaml")
