"""The shared lab loop on every family (tiny presets, synthetic data): it trains, logs, counts FLOPs,
checkpoints, resumes, exports, and the exported model samples what the trained one does."""

import json

import pytest
import torch

from conjure.lab import data as lab_data
from conjure.lab import families
from conjure.lab.data import LabData
from conjure.lab.train import load_trained, train_family


@pytest.fixture
def synthetic(monkeypatch):
    """Two-class synthetic 'garments' (a bright square or a bar on white), no dataset cache needed."""
    def load_split(split, limit=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        n = limit or 512
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.ones(n, 1, 28, 28)
        x[y % 2 == 0, :, 8:20, 8:20] = -1
        x[y % 2 == 1, :, 4:24, 12:16] = -1
        return LabData(x + 0.05 * torch.randn(x.shape, generator=g), y)
    monkeypatch.setattr("conjure.lab.train.load_split", load_split)
    monkeypatch.setattr(lab_data, "load_split", load_split)
    for name in families.FAMILIES:
        monkeypatch.setattr(families.FAMILIES[name], "autoencoder_images",
                            256 if families.FAMILIES[name].autoencoder_images else 0)
    return load_split


@pytest.mark.parametrize("name", ["gan", "vae", "ddpm", "ldm", "flow", "ar"])
def test_family_trains_exports_and_samples(name, synthetic, tmp_path):
    out = train_family(name, tmp_path / name, images=256, preset="test")
    meta = json.loads((out / "config.json").read_text())
    assert meta["train_flops"] > 0 and all(v > 0 for v in meta["train_flops_per_image"].values())
    assert sum(meta["stage_images"].values()) == 256 + (256 if name in ("ldm", "ar") else 0)
    log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    assert log == [] or all("step" in r for r in log)
    family, _ = load_trained(out)
    text = lab_data.text_for(torch.arange(4), prompt_only=True)
    a, nfe = family.sample(text, torch.Generator().manual_seed(3), steps=3)
    b, _ = family.sample(text, torch.Generator().manual_seed(3), steps=3)
    assert a.shape == (4, 1, 28, 28) and torch.equal(a, b)            # seeded sampling is reproducible
    assert a.min() >= -1 and a.max() <= 1
    assert nfe == {"gan": 1, "vae": 1, "ddpm": 3, "ldm": 3, "flow": 3, "ar": 49}[name]


def test_guidance_doubles_network_evaluations_and_heun_costs_two_per_step(synthetic, tmp_path):
    family = families.build_family("flow", "test")
    text = lab_data.text_for(torch.arange(2), prompt_only=True)
    gen = torch.Generator().manual_seed(0)
    assert family.sample(text, gen, steps=4, sampler="euler")[1] == 4
    assert family.sample(text, gen, steps=4, sampler="heun")[1] == 7          # the last step is Euler
    assert family.sample(text, gen, steps=4, sampler="euler", guidance=3.0)[1] == 8
    with pytest.raises(ValueError, match="euler or heun"):
        family.sample(text, gen, steps=2, sampler="ddim")


def test_resume_continues_and_a_larger_budget_extends(synthetic, tmp_path):
    run = tmp_path / "vae"
    assert train_family("vae", run, images=256, preset="test", max_minutes=0) is None   # stopped after one step
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=True)
    assert state["stage_images"] == 128
    out = train_family("vae", run, images=384, preset="test")
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=True)
    assert state["stage_images"] == 384 and state["step"] == 3
    assert json.loads((out / "config.json").read_text())["images"] == 384


def test_exported_weights_reload_bit_identical(synthetic, tmp_path):
    out = train_family("ddpm", tmp_path / "d", images=256, preset="test")
    f1, _ = load_trained(out)
    f2, _ = load_trained(out)
    for (k, v), (_, w) in zip(f1.net_for_sampling().state_dict().items(), f2.net_for_sampling().state_dict().items()):
        assert torch.equal(v, w), k


def test_gan_finalize_re_estimates_the_sampling_generators_batchnorm_statistics(synthetic):
    family = families.build_family("gan", "test")
    family.ema = None
    g = family.nets["generator"]
    before = [m.running_var.clone() for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    text = lab_data.text_for(torch.arange(256) % 10, prompt_only=True)
    family.finalize(torch.zeros(256, 1, 28, 28), text)
    after = [m.running_var for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert not g.training


def test_denoise_demo_reports_the_eps_models_implied_image_at_matched_noise(synthetic, monkeypatch):
    """Untrained (zero-output) networks: the eps model predicts no noise, so its noise error is the noise's
    variance and its implied clean image is off by sqrt((1 - a) / a); flow time matches the DDPM SNR."""
    from conjure.lab import demos
    monkeypatch.setattr(demos, "load_split", synthetic)
    ddpm, flow = families.build_family("ddpm", "test"), families.build_family("flow", "test")
    rows = demos.denoising_errors(ddpm, flow, timesteps=(10, 500, 999), n=64)
    assert [r["t"] for r in rows] == [10, 500, 999]
    for r in rows:
        assert abs(r["ddpm_eps_mse"] - 1.0) < 0.1
        a = float(ddpm.alpha_bar[r["t"]])
        assert abs(r["ddpm_x0_rmse"] / ((1 - a) / a) ** 0.5 - 1) < 0.1
        s = r["flow_time"]
        assert abs((s / (1 - s)) ** 2 / r["snr"] - 1) < 0.01
    assert rows[0]["ddpm_x0_rmse"] < rows[1]["ddpm_x0_rmse"] < rows[2]["ddpm_x0_rmse"]
