"""End to end through the real command line: `conjure models`, `generate`, `data` and `train`.

Most tests use Typer's CliRunner in-process; the main generate path also runs as a real subprocess
(`python -m conjure.cli`), which inherits the session's CONJURE_HOME and offline settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conjure.cli import app
from conjure.config import REPO_ROOT, get_settings
from conjure.provenance.metadata import parse_parameters

MODEL = "test-tiny"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def registered(runner, tiny_model_dir) -> str:
    result = runner.invoke(app, ["models", "add", str(tiny_model_dir), "--name", MODEL])
    assert result.exit_code == 0, result.output
    assert f"added {MODEL} (conjure) -> {tiny_model_dir}" in result.stdout
    return MODEL


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Input files for image-to-image and inpainting: a 64x64 init image, masks and a fake PNG."""
    d = tmp_path_factory.mktemp("cli-inputs")
    yy, xx = np.mgrid[0:64, 0:64]
    Image.fromarray(np.stack([xx * 4, yy * 4, 255 - xx * 2], axis=-1).astype(np.uint8)).save(d / "init.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :24] = 255
    Image.fromarray(mask).save(d / "mask.png")
    Image.new("L", (32, 32), 255).save(d / "mask32.png")
    (d / "x.png").write_text("this is not an image")
    return {p.stem: p for p in d.iterdir()}


def _generated(out: Path) -> dict[str, dict]:
    """PNG name -> parsed parameters chunk, for every PNG in `out`."""
    found = {}
    for p in sorted(out.glob("*.png")):
        with Image.open(p) as im:
            found[p.name] = parse_parameters(im.text["parameters"]) | {"_size": im.size}
    return found


def test_models_add_and_list(runner, registered, tiny_model_dir):
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith(registered))
    assert "added" in line and "conjure" in line and str(tiny_model_dir) in line
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert {"name": registered, "path": str(tiny_model_dir), "kind": "conjure", "builtin": False} in listed


def test_models_add_refuses_a_folder_that_is_not_a_model(runner, tmp_path):
    result = runner.invoke(app, ["models", "add", str(tmp_path), "--name", "nothing"])
    assert result.exit_code == 2
    assert "is not a model folder" in result.stderr and result.stdout == ""


@pytest.mark.slow   # a fresh interpreter imports torch, diffusers and the text encoder (~8 s on 2 cores)
def test_generate_in_a_subprocess_writes_pngs_with_parameters(registered, tmp_path):
    from conjure.safety import load_policy
    safety_negative = load_policy().safety_negative_prompt
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "conjure.cli", "generate", "a red apple", "-n", "2", "--seed", "1", "--steps", "3",
         "--guidance", "5", "--negative", "blurry", "--size", "256", "--model", registered, "-o", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    made = _generated(out)
    assert sorted(made) == ["a-red-apple-1.png", "a-red-apple-2.png"]
    assert proc.stdout.split() == [str(out / name) for name in sorted(made)]
    for name, seed in (("a-red-apple-1.png", "1"), ("a-red-apple-2.png", "2")):
        p = made[name]
        assert p["Seed"] == seed and p["_size"] == (256, 256)
        # the negative prompt used (and recorded) carries the policy's safety negative prompt, once
        assert (p["prompt"], p["negative_prompt"], p["Steps"], p["CFG scale"], p["Size"], p["Model"]) == \
               ("a red apple", f"blurry, {safety_negative}", "3", "5.0", "256x256", registered)
        assert p["Sampler"] == "DPM++ 2M" and len(p["Model hash"]) == 16
    raw = (out / "a-red-apple-1.png").read_bytes()
    assert b"Seed: 1" in raw
    # every output is stamped (C2PA manifest, watermark) and audited, through the real CLI
    check = subprocess.run([sys.executable, "-m", "conjure.cli", "verify", "--json", str(out / "a-red-apple-1.png")],
                           capture_output=True, text=True, timeout=120)
    report = json.loads(check.stdout)
    assert report["c2pa"]["state"] in ("valid", "trusted") and report["watermark"]["found"]
    assert report["audit_match"] == "sha256" and report["audit"][0]["seed"] == 1


def test_a_refused_prompt_exits_3_with_its_verdict_and_writes_nothing(runner, registered, tmp_path):
    result = runner.invoke(app, ["generate", "a naked woman", "--model", registered, "--steps", "2",
                                 "-o", str(tmp_path / "out")])
    assert result.exit_code == 3, result.output
    assert "refused by the content policy" in result.stderr and "category sexual" in result.stderr
    assert not (tmp_path / "out").exists()


def test_generate_matches_the_pipeline_and_never_overwrites(runner, registered, tiny_model_dir, tmp_path):
    from conjure.pipelines.request import GenerationRequest
    from conjure.pipelines.text_to_image import TextToImagePipeline

    out = tmp_path / "out"
    args = ["generate", "heart icon", "--seed", "7", "--steps", "3", "--size", "64", "--scheduler", "euler_a",
            "--model", registered, "-o", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, args)
    assert sorted(p.name for p in out.iterdir()) == ["heart-icon-7-1.png", "heart-icon-7.png"]
    a, b = (np.asarray(Image.open(out / n)) for n in ("heart-icon-7.png", "heart-icon-7-1.png"))
    assert np.array_equal(a, b) and second.stdout.strip() == str(out / "heart-icon-7-1.png")
    # the CLI's pipeline appends the policy's safety negative prompt (at 64 px no watermark touches pixels)
    from conjure.safety import load_policy
    direct = TextToImagePipeline.from_folder(tiny_model_dir)(
        GenerationRequest("heart icon", negative_prompt=load_policy().safety_negative_prompt, seed=7, steps=3,
                          size=64, scheduler="euler_a")).images[0]
    assert np.array_equal(a, np.asarray(direct))
    assert _generated(out)["heart-icon-7.png"]["Sampler"] == "Euler a"


def test_generate_image_to_image_with_strength(runner, registered, images, tmp_path):
    outs = {}
    for strength in ("0.3", "1.0"):
        outs[strength] = tmp_path / strength
        result = runner.invoke(app, ["generate", "a red apple", "--steps", "4", "--size", "64", "--model", registered,
                                     "--init-image", str(images["init"]), "--strength", strength,
                                     "-o", str(outs[strength])])
        assert result.exit_code == 0, result.output
    p = _generated(outs["0.3"])["a-red-apple-0.png"]
    assert p["Task"] == "image_to_image" and p["_size"] == (64, 64)
    low, full = (np.asarray(Image.open(outs[s] / "a-red-apple-0.png"), dtype=np.int16) for s in ("0.3", "1.0"))
    assert np.abs(low - full).mean() > 1


def test_generate_inpainting_with_a_mask(runner, registered, images, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", "a red apple", "--steps", "3", "--size", "64", "--model", registered,
                                 "--init-image", str(images["init"]), "--mask", str(images["mask"]),
                                 "--strength", "0.9", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _generated(out)["a-red-apple-0.png"]["Task"] == "inpaint"


def _bad_input_cases():
    long = "a" * 1001
    return {
        "empty prompt": ([""], "the prompt is empty"),
        "over-long prompt": ([long], "the prompt has 1001 characters; the limit is 1000"),
        "unknown scheduler": (["x", "--scheduler", "nope"], "unknown scheduler 'nope'; choose from: ddpm"),
        "unknown model": (["x", "--model", "nope"], ("unknown model 'nope'; known models: ", MODEL)),
        "unsupported size": (["x", "--size", "100"], "size 100 is not supported by this model; choose from: 64"),
        "n=0": (["x", "-n", "0"], "n must be between 1 and 16, got 0"),
        "n=17": (["x", "-n", "17"], "n must be between 1 and 16, got 17"),
        "steps=0": (["x", "--steps", "0"], "steps must be between 1 and 1000, got 0"),
        "negative seed": (["x", "--seed", "-1"], "seed must be between 0 and"),
        "guidance too high": (["x", "--guidance", "31"], "guidance must be between 0 and 30.0"),
        "unreadable init image": (["x", "--init-image", "{x}"], "cannot read the init image"),
        "missing init image": (["x", "--init-image", "{missing}"], "does not exist"),
        "mask of the wrong size": (["x", "--init-image", "{init}", "--mask", "{mask32}"],
                                   "the mask is 32x32 but the init image is 64x64"),
        "mask without init image": (["x", "--mask", "{mask}"], "a mask needs an init image"),
        "strength out of range": (["x", "--init-image", "{init}", "--strength", "1.5"], "strength must be in (0, 1]"),
        "strength too low for the steps": (["x", "--init-image", "{init}", "--strength", "0.1", "--steps", "3"],
                                           "repaints nothing: raise --strength or --steps"),
        "unknown precision": (["x", "--precision", "fp16"], "--precision must be bf16 or fp32"),
    }


@pytest.mark.parametrize("case", list(_bad_input_cases()))
def test_bad_input_exits_2_with_a_message_and_writes_nothing(runner, registered, images, tmp_path, case):
    args, message = _bad_input_cases()[case]
    paths = {**{k: str(v) for k, v in images.items()}, "missing": str(tmp_path / "missing.png")}
    args = [a.format(**paths) for a in args]
    if "--model" not in args:
        args += ["--model", registered]
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", *args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    last_line = result.stderr.replace("\r", "\n").strip().splitlines()[-1]   # after any progress bar
    fragments = (message,) if isinstance(message, str) else message
    assert last_line.startswith("error: ") and all(f in last_line for f in fragments)
    assert result.stdout == ""
    assert not out.exists()


def test_generate_with_a_missing_default_model_names_it_and_how_to_add_one(runner, tmp_path, monkeypatch):
    # The built-in model is committed, so point the default at a name that no folder provides.
    monkeypatch.setenv("CONJURE_DEFAULT_MODEL", "no-such-model")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["generate", "x", "-o", str(tmp_path / "out")])
    finally:
        monkeypatch.delenv("CONJURE_DEFAULT_MODEL")
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "unknown model 'no-such-model'" in result.stderr
    assert "conjure models add PATH" in result.stderr and not (tmp_path / "out").exists()


def test_generate_with_an_added_stable_diffusion_folder(runner, tiny_sd_dir, tmp_path):
    added = runner.invoke(app, ["models", "add", str(tiny_sd_dir), "--name", "sd-tiny-cli"])
    assert added.exit_code == 0 and "(StableDiffusionPipeline)" in added.stdout
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", "a red apple", "-n", "2", "--seed", "3", "--model", "sd-tiny-cli",
                                 "--steps", "2", "--size", "64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    made = _generated(out)
    assert sorted(made) == ["a-red-apple-3.png", "a-red-apple-4.png"]
    assert [p["Seed"] for p in made.values()] == ["3", "4"]
    for p in made.values():
        assert p["_size"] == (64, 64) and p["Model"] == "sd-tiny-cli" and p["Steps"] == "2"
        assert p["CFG scale"] == "7.5" and p["Sampler"] == "DPM++ 2M"   # the folder pipeline's defaults


# ----------------------------------------------------------------------------------------- data


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """A CONJURE_HOME of this test's own, so that building data does not touch the session caches."""
    home = tmp_path / "home"
    monkeypatch.setenv("CONJURE_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def test_data_build_unknown_source_exits_2(runner, fresh_home):
    result = runner.invoke(app, ["data", "build", "--source", "nope"])
    assert result.exit_code == 2
    assert "unknown source(s): nope; choose from: noto, twemoji" in result.stderr
    assert not fresh_home.exists()


def test_data_build_one_source_with_a_limit(runner, fresh_home):
    result = runner.invoke(app, ["data", "build", "--source", "tabler", "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("tabler: 3 items")
    assert (fresh_home / "data" / "tabler" / "images.npy").is_file()
    assert "| tabler |" in (fresh_home / "data" / "ATTRIBUTION.md").read_text()


def test_data_build_without_packages_says_how_to_install_them(runner, fresh_home, tmp_path, monkeypatch):
    monkeypatch.setenv("CONJURE_NPM_DIR", str(tmp_path / "empty"))
    get_settings.cache_clear()
    result = runner.invoke(app, ["data", "build", "--source", "noto"])
    assert result.exit_code == 2
    assert "npm ci --prefix data/npm" in result.stderr


def test_data_show_writes_a_contact_sheet(runner, tiny_data, tmp_path):
    out = tmp_path / "sheets" / "noto.png"
    result = runner.invoke(app, ["data", "show", "--source", "noto", "-n", "8", "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (8 * 96, 96 + 2 * 13 + 4)


@pytest.mark.parametrize("args, message", [
    (["--split", "nope"], "unknown split 'nope'; choose from: train, validation, test"),
    (["--source", "lucide"], "conjure data build --source lucide"),
])
def test_data_show_bad_input_exits_2(runner, tiny_data, tmp_path, args, message):
    result = runner.invoke(app, ["data", "show", *args, "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "s.png").exists()


# ---------------------------------------------------------------------------------------- train


def test_train_dry_run_prints_the_resolved_recipe(runner, settings):
    runs_before = sorted(settings.runs_dir.iterdir()) if settings.runs_dir.is_dir() else []
    result = runner.invoke(app, ["train", str(REPO_ROOT / "recipes" / "conjure-tiny.yaml"), "--dry-run",
                                 "--images", "1000"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)
    assert config["unet_preset"] == "tiny" and config["name"] == "conjure-tiny"
    assert config["images"] == 1000                      # the override is applied
    runs_after = sorted(settings.runs_dir.iterdir()) if settings.runs_dir.is_dir() else []
    assert runs_after == runs_before                     # a dry run creates no run directory


def test_train_precision_override_and_its_bad_values(runner):
    recipe = str(REPO_ROOT / "recipes" / "conjure-tiny.yaml")
    result = runner.invoke(app, ["train", recipe, "--dry-run", "--precision", "no"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mixed_precision"] == "no"
    assert json.loads(runner.invoke(app, ["train", recipe, "--dry-run"]).stdout)["mixed_precision"] == "bf16"
    bad = runner.invoke(app, ["train", recipe, "--dry-run", "--precision", "fp8"])
    assert bad.exit_code == 2 and "--precision must be bf16 or no" in bad.stderr


def test_train_dry_run_of_the_vae_recipe(runner):
    result = runner.invoke(app, ["train", str(REPO_ROOT / "recipes" / "conjure-tiny-vae.yaml"), "--dry-run"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["kind"] == "vae"


def test_train_missing_recipe_exits_2(runner, tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml"), "--dry-run"])
    assert result.exit_code == 2 and "recipe file not found" in result.stderr
