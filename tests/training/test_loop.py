"""The training loop on a seeded tiny model: run directories, checkpoints, resume, samples, EMA, recipes."""

from __future__ import annotations

import json

import pytest
import torch

from conjure.training.loop import current_config, new_run_dir, train
from conjure.training.recipe import Recipe
from conjure.training.vae import train_vae


@pytest.fixture(scope="module")
def tiny_vae_dir(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("vae-run")
    return train_vae(run, list(tiny_data.sources), channels=(8, 16, 16), steps=3, batch=8, save_every=2)


def _recipe(tmp_path, vae_dir, sources, **kw) -> Recipe:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# fixed prompts\nred apple\nheart icon\n")
    base = dict(name="t", sources=list(sources), vae=str(vae_dir), unet_preset="test", batch=16, images=64,
                warmup_images=16, save_every_images=32, sample_every_images=64, sample_prompts=str(prompts),
                ema_half_life_images=64)
    base.update(kw)
    return Recipe(**base)


def test_vae_training_writes_weights_metrics_and_scale(tiny_vae_dir):
    run = tiny_vae_dir.parent
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["images_seen"] == 24
    assert metrics["val_l1"] > 0
    from conjure.models.vae import TinyVAE
    vae = TinyVAE.from_pretrained(tiny_vae_dir)
    assert vae.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    assert state_step(run / "state.pt") == 3


def state_step(path) -> int:
    return int(torch.load(path, weights_only=True)["step"])


def test_train_then_resume(tiny_data, tiny_vae_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_vae_dir, tiny_data.sources)
    run = new_run_dir(tmp_path / "runs", recipe.name)
    model_dir = train(recipe, run, tmp_path / "cache")
    # resolved config, log, checkpoint (weights and state apart), model folder and a sample grid
    assert json.loads((run / "config.json").read_text())["unet_preset"] == "test"
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert all(r["loss"] > 0 for r in log)
    assert state_step(run / "checkpoint" / "state.pt") == 4
    assert (run / "checkpoint" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (run / "checkpoint" / "unet_ema" / "diffusion_pytorch_model.safetensors").is_file()
    assert (model_dir / "conjure.json").is_file() and (model_dir / "model_index.json").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["000000064.png"]

    # resume with a larger budget: continues from step 4 to step 8 in the same directory
    before = (run / "config.json").read_text()
    train(_recipe(tmp_path, tiny_vae_dir, tiny_data.sources, images=128), run, tmp_path / "cache")
    assert state_step(run / "checkpoint" / "state.pt") == 8
    assert (run / "config.json").read_text() == before   # the run's original config is never rewritten
    # the changed recipe is kept beside it, from the images where it took over, and is the run's current one
    assert json.loads((run / "config.000000064.json").read_text())["images"] == 128
    assert current_config(run)["images"] == 128
    train(_recipe(tmp_path, tiny_vae_dir, tiny_data.sources, images=128), run, tmp_path / "cache")
    assert [p.name for p in run.glob("config.*.json")] == ["config.000000064.json"]   # same recipe: none new
    assert "000000128.png" in {p.name for p in (run / "samples").iterdir()}


def test_a_run_without_sample_grids_still_saves_its_model(tiny_data, tiny_vae_dir, tmp_path):
    """sample_grids=False (a bare GPU machine has no text encoder package for the pipeline) skips the grids only."""
    recipe = _recipe(tmp_path, tiny_vae_dir, tiny_data.sources)
    run = new_run_dir(tmp_path / "runs", recipe.name)
    model_dir = train(recipe, run, tmp_path / "cache", sample_grids=False)
    assert not (run / "samples").exists() or not any((run / "samples").iterdir())
    assert state_step(run / "checkpoint" / "state.pt") == 4
    assert (model_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_new_run_dir_never_reuses(tmp_path):
    a, b = new_run_dir(tmp_path, "x"), new_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()


def test_sigterm_saves_a_checkpoint_and_stops(tiny_data, tiny_vae_dir, tmp_path, monkeypatch):
    """A stopped run (SIGTERM, as a session's end sends) finishes its step, saves, and can resume."""
    import os
    import signal

    from conjure.training import ema as ema_module
    real_update = ema_module.EMA.update
    calls = {"n": 0}

    def update_then_terminate(self, model, images_seen, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_update(self, model, images_seen, batch)
    monkeypatch.setattr(ema_module.EMA, "update", update_then_terminate)
    run = new_run_dir(tmp_path / "runs", "t")
    train(_recipe(tmp_path, tiny_vae_dir, tiny_data.sources, images=10_000), run, tmp_path / "cache")
    assert state_step(run / "checkpoint" / "state.pt") == 2
    assert signal.getsignal(signal.SIGTERM) is not None   # the previous handler is restored


def test_validation_loss_is_deterministic(tiny_data, tiny_model_dir):
    from conjure.pipelines.components import load_components
    from conjure.training.validate import TIMESTEPS, validation_loss
    c = load_components(tiny_model_dir)
    a = validation_loss(c, list(tiny_data.sources), split="train", limit=8, batch=4)
    b = validation_loss(c, list(tiny_data.sources), split="train", limit=8, batch=4)
    assert a == b and a["n_items"] == 8 and len(a["loss_by_t"]) == len(TIMESTEPS)
    assert 0 < a["loss"] < 100 and a["precision"] == "fp32"
    bf = validation_loss(c, list(tiny_data.sources), split="train", limit=8, batch=4, precision="bf16")
    assert bf["precision"] == "bf16" and abs(bf["loss"] - a["loss"]) < 0.1 * a["loss"]   # same objective
    with pytest.raises(ValueError, match="precision"):
        validation_loss(c, list(tiny_data.sources), split="train", limit=8, precision="fp16")


def test_finish_model_writes_a_model_card(tiny_data, tiny_vae_dir, tmp_path):
    from conjure.pipelines.components import load_components
    from conjure.training.card import finish_model
    run = new_run_dir(tmp_path / "runs", "t")
    train(_recipe(tmp_path, tiny_vae_dir, tiny_data.sources, images=32, sample_every_images=10_000), run,
          tmp_path / "cache")
    out = finish_model(run, tmp_path / "models" / "t", val_limit=8)
    card = (out / "README.md").read_text()
    assert "Images seen: **32**" in card and "Validation diffusion loss" in card
    assert "Trained to its budget of 32 images" in card and "short of its budget" not in card
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_seen"] == 32 and 0 < metrics["validation"]["n_items"] <= 8
    assert (out / "samples.png").is_file()
    c = load_components(out)   # stored in fp16, loaded as fp32
    assert next(c.unet.parameters()).dtype == torch.float32
    from safetensors import safe_open
    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16


def test_init_from_warm_starts_a_new_run(tiny_data, tiny_vae_dir, tmp_path):
    """A new run can continue from a finished model folder (when the first run's directory is gone)."""
    from conjure.training.card import finish_model
    first = new_run_dir(tmp_path / "runs", "t")
    train(_recipe(tmp_path, tiny_vae_dir, tiny_data.sources, images=32, sample_every_images=10_000), first,
          tmp_path / "cache")
    model = finish_model(first, tmp_path / "models" / "t", val_limit=4)
    second = new_run_dir(tmp_path / "runs", "t")
    train(_recipe(tmp_path, tiny_vae_dir, tiny_data.sources, images=64, sample_every_images=10_000), second,
          tmp_path / "cache", init_from=model)
    state = torch.load(second / "checkpoint" / "state.pt", weights_only=True)
    assert int(state["images_seen"]) == 64 and int(state["step"]) == 4   # counted on from the first run's 32
    # finishing the warm-started run into the same folder records both sittings on the card
    model = finish_model(second, model, val_limit=4)
    sittings = json.loads((model / "metrics.json").read_text())["sittings"]
    assert [(s["images_from"], s["images_to"]) for s in sittings] == [(0, 32), (32, 64)]
    assert "| 2 | 32 -> 64 |" in (model / "README.md").read_text()


def test_wall_time_of_a_resumed_run_counts_every_stretch():
    from conjure.training.card import redone_seconds, run_wall_seconds
    log = [{"images_seen": 100, "elapsed_s": 10.0}, {"images_seen": 200, "elapsed_s": 50.0},   # first process
           {"images_seen": 300, "elapsed_s": 5.0}, {"images_seen": 400, "elapsed_s": 30.0},    # resumed
           {"images_seen": 500, "elapsed_s": 12.5}]                                            # resumed again
    assert run_wall_seconds(log) == 92.5
    assert redone_seconds(log) == 0.0
    assert run_wall_seconds([]) == 0.0


def test_wall_time_after_an_install_and_of_a_process_stopped_between_checkpoints():
    from conjure.training.card import redone_seconds, run_wall_seconds
    log = [{"images_seen": 100, "elapsed_s": 10.0}, {"images_seen": 200, "elapsed_s": 50.0},
           {"images_seen": 300, "elapsed_s": 90.0},                   # installed at 300, then stopped
           {"images_seen": 400, "elapsed_s": 20.0}, {"images_seen": 500, "elapsed_s": 600.0},  # lost: stopped
           {"images_seen": 400, "elapsed_s": 15.0}, {"images_seen": 500, "elapsed_s": 25.0},   # resumed from 300
           {"images_seen": 600, "elapsed_s": 35.0}]
    assert run_wall_seconds(log) == 90.0 + 600.0 + 35.0
    assert redone_seconds(log) == 600.0               # the whole second process was repeated
    assert run_wall_seconds(log, after=300) == 600.0 + 35.0
    assert redone_seconds(log, after=300) == 600.0
    assert run_wall_seconds(log, after=200) == 40.0 + 600.0 + 35.0    # the first process past 200: 50 -> 90 s
    assert run_wall_seconds(log, after=600) == 0.0


def test_learning_rate_warms_up_stays_then_falls_over_the_last_images():
    from conjure.training.recipe import Recipe
    r = Recipe(name="t", images=1000, batch=10, lr=1.0, warmup_images=100, decay_images=400, final_lr_fraction=0.1)
    assert r.lr_at(0) == pytest.approx(0.1) and r.lr_at(90) == pytest.approx(1.0)
    assert r.lr_at(500) == pytest.approx(1.0) and r.lr_at(600) == pytest.approx(1.0)
    assert r.lr_at(800) == pytest.approx(0.1 + 0.9 * 0.5)          # halfway through the fall
    assert r.lr_at(1000) == pytest.approx(0.1) and r.lr_at(5000) == pytest.approx(0.1)
    constant = Recipe(name="t", images=1000, batch=10, lr=1.0, warmup_images=100)
    assert constant.lr_at(999) == pytest.approx(1.0)
