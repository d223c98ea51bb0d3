"""The model folder: diffusers-like layout, spec, hash, load."""

from __future__ import annotations

import json

import pytest
import torch

from conjure.pipelines.components import (MODEL_INDEX, Components, ModelSpec, is_conjure_folder, load_components,
                                          model_hash, save_components)


def test_folder_layout(tiny_model_dir):
    assert json.loads((tiny_model_dir / "model_index.json").read_text()) == MODEL_INDEX
    for part in ("unet", "vae"):
        assert (tiny_model_dir / part / "config.json").is_file()
        assert (tiny_model_dir / part / "diffusion_pytorch_model.safetensors").is_file()
    sched = json.loads((tiny_model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDPMScheduler" and sched["prediction_type"] == "v_prediction"
    assert json.loads((tiny_model_dir / "conjure.json").read_text())["name"] == "test-tiny"
    assert not list(tiny_model_dir.rglob("*.bin")) and not list(tiny_model_dir.rglob("*.pt"))   # no pickles
    assert is_conjure_folder(tiny_model_dir)


def test_load_components_restores_weights_and_spec(tiny_model_dir):
    c = load_components(tiny_model_dir)
    again = load_components(tiny_model_dir)
    assert c.spec == ModelSpec(name="test-tiny", max_tokens=16)
    assert c.folder == tiny_model_dir and not c.unet.training
    for (name, p), (_, q) in zip(c.unet.state_dict().items(), again.unet.state_dict().items()):
        assert torch.equal(p, q), name
    assert c.model_hash == model_hash(tiny_model_dir)


def test_load_in_bfloat16(tiny_model_dir):
    c = load_components(tiny_model_dir, dtype=torch.bfloat16)
    assert next(c.unet.parameters()).dtype == torch.bfloat16


def test_spec_ignores_unknown_keys(tmp_path):
    (tmp_path / "conjure.json").write_text(json.dumps({"name": "m", "sizes": [64], "future_field": 1}))
    spec = ModelSpec.read(tmp_path)
    assert spec.name == "m" and spec.sizes == [64] and spec.default_steps == 20


def test_model_hash_names_the_weights(tiny_model_dir, tmp_path):
    c = load_components(tiny_model_dir)
    same = save_components(Components(c.unet, c.vae, c.scheduler_config, c.spec), tmp_path / "same")
    assert model_hash(same) == model_hash(tiny_model_dir)
    with torch.no_grad():
        next(c.vae.parameters()).add_(1.0)
    changed = save_components(Components(c.unet, c.vae, c.scheduler_config, c.spec), tmp_path / "changed")
    assert model_hash(changed) != model_hash(tiny_model_dir)
    assert Components(c.unet, c.vae, {}, c.spec).model_hash == "unsaved"


def test_loading_something_else_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is not a conjure model folder"):
        load_components(tmp_path)
    assert not is_conjure_folder(tmp_path)
