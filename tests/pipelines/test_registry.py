"""The model registry: built-in folders plus user-added folders in CONJURE_HOME."""

from __future__ import annotations

import json

import pytest

from conjure.config import Settings
from conjure.pipelines import registry
from conjure.pipelines.registry import add_model, get_model, list_models


@pytest.fixture
def home(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_nothing_is_registered_in_a_fresh_home(home):
    assert [m for m in list_models(home) if not m.builtin] == []
    assert not home.home.exists()   # listing creates nothing


def test_add_list_get(home, tiny_model_dir, tiny_sd_dir):
    entry = add_model(tiny_model_dir, "mine", settings=home)
    assert (entry.name, entry.path, entry.kind, entry.builtin) == ("mine", tiny_model_dir, "conjure", False)
    sd = add_model(tiny_sd_dir, settings=home)                  # name defaults to the folder's name
    assert sd.name == "sd-tiny" and sd.kind == "StableDiffusionPipeline"
    added = {m.name: m for m in list_models(home) if not m.builtin}
    assert set(added) == {"mine", "sd-tiny"}
    assert get_model("mine", home) == entry
    assert get_model("sd-tiny", home).kind == "StableDiffusionPipeline"
    stored = json.loads((home.models_dir / "registry.json").read_text())
    assert stored["mine"] == {"path": str(tiny_model_dir), "kind": "conjure"}


def test_adding_again_replaces_the_entry(home, tiny_model_dir, tiny_sd_dir):
    add_model(tiny_model_dir, "m", settings=home)
    add_model(tiny_sd_dir, "m", settings=home)
    assert get_model("m", home).path == tiny_sd_dir


def test_unknown_model_lists_the_known_ones(home, tiny_model_dir):
    add_model(tiny_model_dir, "alpha", settings=home)
    add_model(tiny_model_dir, "beta", settings=home)
    with pytest.raises(ValueError) as e:
        get_model("gamma", home)
    msg = str(e.value)
    assert "unknown model 'gamma'" in msg and "alpha" in msg and "beta" in msg
    assert "conjure models add PATH" in msg


def test_a_model_whose_folder_vanished_says_how_to_fix_it(home, tiny_model_dir, tmp_path):
    import shutil
    moved = shutil.copytree(tiny_model_dir, tmp_path / "moving")
    add_model(moved, "moving", settings=home)
    shutil.rmtree(moved)
    with pytest.raises(ValueError, match="no longer exists; re-add it with: conjure models add PATH --name moving"):
        get_model("moving", home)


def test_adding_a_folder_that_is_not_a_model_is_refused(home, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a model folder"):
        add_model(tmp_path / "photos", settings=home)
    with pytest.raises(ValueError, match="is not a folder"):
        add_model(tmp_path / "missing", settings=home)
    assert not (home.models_dir / "registry.json").exists()


def test_builtin_models_are_listed_and_their_names_protected(home, tiny_model_dir, tmp_path, monkeypatch):
    builtin = tmp_path / "builtin"
    (builtin / "conjure-tiny").mkdir(parents=True)
    (builtin / "conjure-tiny" / "conjure.json").write_text("{}")
    (builtin / "README-only").mkdir()
    monkeypatch.setattr(registry, "BUILTIN_MODELS_DIR", builtin)
    entries = list_models(home)
    assert [(m.name, m.builtin, m.kind) for m in entries] == [("conjure-tiny", True, "conjure")]
    with pytest.raises(ValueError, match="'conjure-tiny' is a built-in model's name"):
        add_model(tiny_model_dir, "conjure-tiny", settings=home)
