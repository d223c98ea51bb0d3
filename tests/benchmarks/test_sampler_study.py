"""The sampler study's network-evaluation counter (2 per step under guidance, 1 without, 2N-1 steps for Heun),
its 'matches' rule and its config parsing; the study itself is too long to run in tests."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.benchmarks.helpers import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("sampler_study")


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    from conjure.pipelines.text_to_image import TextToImagePipeline
    return TextToImagePipeline.from_folder(tiny_model_dir)


@pytest.mark.parametrize("sampler, steps, guidance, per_image", [
    ("dpmpp_2m", 3, 5.0, 6),      # unconditional and conditional rows: two evaluations a step
    ("dpmpp_2m", 3, 1.0, 3),      # no guidance: one
    ("heun", 2, 5.0, 2 * 3),      # Heun: 2N - 1 evaluations for N steps, each doubled by guidance
])
def test_nfe_counter_counts_evaluations_per_image(study, pipe, sampler, steps, guidance, per_image):
    from conjure.pipelines.request import GenerationRequest
    counter = study.NFECounter()
    with counter.around(pipe):
        pipe(GenerationRequest(prompt="red apple", n=2, steps=steps, guidance=guidance, scheduler=sampler, size=64))
    assert counter.per_image(2) == per_image
    assert "denoise" not in vars(pipe)   # the wrapper is gone afterwards: the class's method is back


def test_nfe_counter_restores_an_instance_attribute_and_counts_rows(study):
    class Net:
        pass
    net = Net()
    net.denoise = lambda x, t: x
    original = net.denoise
    counter = study.NFECounter()
    with counter.around(net):
        net.denoise(torch.zeros(4, 1), 0)
        net.denoise(torch.zeros(2, 1), 1)
    assert (counter.calls, counter.rows, counter.per_image(2)) == (2, 6, 3.0)
    assert net.denoise is original


def test_matches_needs_overlap_and_a_mean_within_ten_percent(study):
    ref = {"fid_conjure": 10.0, "fid_ci95": [9.0, 11.0], "clip_score": 30.0, "clip_ci95": [29.0, 31.0]}
    close = {"fid_conjure": 10.8, "fid_ci95": [9.9, 11.7], "clip_score": 29.5, "clip_ci95": [28.5, 30.5]}
    assert study.matches(close, ref)["match"]
    far = {**close, "fid_conjure": 11.5, "fid_ci95": [10.5, 12.5]}           # overlaps, but 15% off
    m = study.matches(far, ref)
    assert m["fid_conjure"] == {"ci_overlap": True, "within_10pct": False, "match": False} and not m["match"]
    apart = {**close, "clip_score": 32.0, "clip_ci95": [31.5, 32.5]}         # within 10%, intervals apart
    assert study.matches(apart, ref)["clip_score"]["ci_overlap"] is False


def test_configs_cover_the_study_and_parse(study):
    configs = study.all_configs()
    assert configs[0] == ("ddpm", 1000) and len(configs) == 1 + 4 * 5
    assert ("dpmpp_2m", 15) in configs and ("heun", 50) in configs
    assert study.parse_config("euler:25") == ("euler", 25)
    with pytest.raises(argparse.ArgumentTypeError):
        study.parse_config("euler")


@pytest.mark.parametrize("argv, says", [(["--batch", "50"], "--batch must be between 1 and 16"),
                                        (["--n", "5"], "--n must be at least 10")])
def test_bad_arguments_stop_before_any_work(study, monkeypatch, capsys, argv, says):
    monkeypatch.setattr("sys.argv", ["sampler_study.py", *argv])
    monkeypatch.setattr(study, "load_tools", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(SystemExit) as stop:
        study.main()
    assert stop.value.code == 2 and says in capsys.readouterr().err


def test_a_configuration_is_generated_once_and_then_read_back(study, pipe, tmp_path, monkeypatch):
    """The study spans sittings: a configuration done before is read from the cache, not generated again."""
    prompts = [{"prompt": "red apple"}, {"prompt": "bell icon"}]
    images, owner, nfe, s_img = study.cached_generate(tmp_path, pipe, prompts, 2, "dpmpp_2m", 2)
    assert images.shape == (2, 3, 64, 64) and owner == [0, 1] and nfe == 4
    assert len(list(tmp_path.glob("dpmpp_2m-2-n2-*.npz"))) == 1

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again")
    monkeypatch.setattr(study, "generate", no_generation)
    again = study.cached_generate(tmp_path, pipe, prompts, 2, "dpmpp_2m", 2)
    assert torch.equal(again[0], images) and again[1:3] == (owner, nfe)
    with pytest.raises(AssertionError, match="generated again"):     # another configuration is not cached
        study.cached_generate(tmp_path, pipe, prompts, 2, "euler", 2)


def test_a_configuration_stopped_inside_resumes_from_its_finished_prompts(study, pipe, tmp_path, monkeypatch):
    """A stop inside a long configuration keeps the prompts already done; the next run generates only the rest,
    and the result equals an uninterrupted run's."""
    prompts = [{"prompt": "red apple"}, {"prompt": "bell icon"}, {"prompt": "star icon"}]
    whole = study.cached_generate(tmp_path / "whole", pipe, prompts, 3, "euler", 2)
    asked, stop = [], {"at": "star icon"}
    real_call = type(pipe).__call__

    def watched(self, req):
        asked.append(req.prompt)
        if req.prompt == stop["at"]:
            raise KeyboardInterrupt
        return real_call(self, req)
    monkeypatch.setattr(type(pipe), "__call__", watched)
    with pytest.raises(KeyboardInterrupt):
        study.cached_generate(tmp_path / "stopped", pipe, prompts, 3, "euler", 2)
    assert not list((tmp_path / "stopped").glob("*.npz"))            # the configuration is not done
    assert len(list((tmp_path / "stopped").glob("*.prompts/prompt*.npz"))) == 2
    asked.clear()
    stop["at"] = None
    again = study.cached_generate(tmp_path / "stopped", pipe, prompts, 3, "euler", 2)
    assert asked == ["star icon"]                                    # only the prompt not done before
    assert torch.equal(again[0], whole[0]) and again[1:3] == whole[1:3]
    assert not list((tmp_path / "stopped").glob("*.prompts"))          # the parts are gone once it is whole


def test_precision_and_batch_are_part_of_the_cache_key_and_bf16_counts_the_same(study, pipe, tiny_model_dir,
                                                                                  tmp_path):
    """A bf16 study must not read fp32 images (or another batch's) from the cache, and its U-Net evaluations
    go through the same counted call."""
    from conjure.pipelines.text_to_image import TextToImagePipeline
    bf16 = TextToImagePipeline.from_folder(tiny_model_dir, precision="bf16")
    prompts = [{"prompt": "red apple"}, {"prompt": "bell icon"}]
    fp = study.cached_generate(tmp_path, pipe, prompts, 4, "dpmpp_2m", 2, batch=2)
    bf = study.cached_generate(tmp_path, bf16, prompts, 4, "dpmpp_2m", 2, batch=2)
    study.cached_generate(tmp_path, pipe, prompts, 4, "dpmpp_2m", 2, batch=1)
    assert len(list(tmp_path.glob("dpmpp_2m-2-n4-*.npz"))) == 3
    assert fp[2] == bf[2] == 4 and fp[1] == bf[1] == [0, 0, 1, 1]


def test_halves_hold_every_prompt_and_the_reference_against_itself_is_the_floor(study):
    owner = [0, 0, 0, 0, 1, 1, 1, 1]
    a, b = study.halves(owner)
    assert a == [0, 2, 4, 6] and b == [1, 3, 5, 7]
    g = torch.Generator().manual_seed(0)
    f_ref = torch.randn(400, 6, generator=g)
    same = torch.randn(400, 6, generator=g)                 # another draw of the same distribution
    shifted = torch.randn(400, 6, generator=g) + 1.5
    owners = [i % 10 for i in range(400)]
    floor = study.fid_to_reference(f_ref, owners, f_ref, owners, bootstrap=20)
    near = study.fid_to_reference(f_ref, owners, same, owners, bootstrap=20)
    far = study.fid_to_reference(f_ref, owners, shifted, owners, bootstrap=20)
    assert floor["n_half"] == 200 and floor["fid_to_ddpm"] < 1.0
    assert near["fid_to_ddpm_ci95"][0] <= floor["fid_to_ddpm_ci95"][1]          # same distribution: at the floor
    assert far["fid_to_ddpm"] > 10 * floor["fid_to_ddpm"] and far["fid_to_ddpm_ci95"][0] > floor["fid_to_ddpm_ci95"][1]


def test_report_states_the_claim_and_the_sharper_check_from_the_rows(study, tmp_path):
    def row(sampler, steps, fid, fid_ddpm, lo, hi):
        return {"sampler": sampler, "steps": steps, "nfe_per_image": 2.0 * steps, "seconds_per_image": 0.1,
                "fid_conjure": fid, "fid_ci95": [fid - 5, fid + 5], "clip_score": 40.0, "clip_ci95": [39.0, 41.0],
                "fid_to_ddpm": fid_ddpm, "fid_to_ddpm_ci95": [lo, hi], "n_half": 250}
    ref = row("ddpm", 1000, 100.0, 4.0, 3.0, 5.0)
    rows = [ref, row("dpmpp_2m", 15, 104.0, 9.0, 7.0, 11.0), row("dpmpp_2m", 20, 103.0, 5.0, 4.5, 6.0)]
    for r in rows[1:]:
        r["vs_ddpm_1000"] = study.matches(r, ref)
        r["vs_ddpm_1000"]["at_floor"] = r["fid_to_ddpm_ci95"][0] <= ref["fid_to_ddpm_ci95"][1]
    result = {"model": "m", "model_hash": "0123456789abcdef", "n_per_config": 500, "preview": False,
              "prompts": ["p"] * 10, "guidance": 5.0, "precision": "bf16", "batch": 16, "n_real": 1000,
              "bootstrap_rounds": 50, "machine": "test", "rows": rows}
    result["claim"] = study.claim_verdict(rows, ref)
    assert result["claim"]["holds"] and result["claim"]["at_floor_by_steps"] == {15: False, 20: True}
    text = study.markdown(result)
    assert "the claim holds for the steps tested" in text
    assert "15 steps: above the floor, 20 steps: at the floor" in text and "4.00 [3.00, 5.00], 250 images" in text
    assert "| 4.00 (floor) | [3.00, 5.00] |" in text
    assert "2 of 2 fast configurations match DDPM 1000, dpmpp_2m at 15 steps (30 evaluations) among them" in text
    assert "separates none of them" in text and "DPM++ 2M at 15 steps 1x faster" in text
    study.plot(result, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000
