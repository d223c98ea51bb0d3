"""Shared fixtures: an isolated CONJURE_HOME, a small dataset cache, a random tiny conjure model and a
random tiny Stable Diffusion folder. Everything is built locally; no test may reach a hub."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conjure.config import get_settings

TINY_SOURCES = ("noto", "twemoji", "mdi", "tabler")
TINY_LIMIT = 60
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DIFFUSERS_VERBOSITY": "error"}


@pytest.fixture(scope="session", autouse=True)
def conjure_home(tmp_path_factory) -> Path:
    """Every test (and every CLI subprocess, which inherits the environment) uses a fresh home."""
    home = tmp_path_factory.mktemp("conjure-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONJURE_HOME", str(home))
        for key, value in OFFLINE_ENV.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def settings(conjure_home):
    s = get_settings()
    assert s.home == conjure_home   # the fixture above is what every get_settings() caller sees
    return s


@pytest.fixture(scope="session")
def tiny_data(settings) -> SimpleNamespace:
    """Caches of the first TINY_LIMIT items of each npm source, built in the session's CONJURE_HOME."""
    from conjure.data import build_source
    dirs = {name: build_source(name, settings=settings, limit=TINY_LIMIT) for name in TINY_SOURCES}
    return SimpleNamespace(settings=settings, dirs=dirs, sources=TINY_SOURCES, limit=TINY_LIMIT)


@pytest.fixture(scope="session")
def fashion_data(settings) -> SimpleNamespace:
    """A small Fashion-MNIST cache next to tiny_data (needs the Debian package dataset-fashion-mnist)."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed under {FASHION_DIR} "
                    "(sudo apt-get install dataset-fashion-mnist)")
    from conjure.data import build_source
    path = build_source("fashion_mnist", settings=settings, limit=TINY_LIMIT)
    return SimpleNamespace(settings=settings, dir=path, limit=TINY_LIMIT)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised conjure model folder built from the "test" presets (seeded)."""
    from conjure.diffusion.schedule import training_scheduler
    from conjure.models.unet import UNET_PRESETS, build_unet
    from conjure.models.vae import VAE_PRESETS, TinyVAE
    from conjure.pipelines.components import Components, ModelSpec, save_components

    torch.manual_seed(0)
    unet = build_unet(UNET_PRESETS["test"]).eval()
    vae = TinyVAE(channels=tuple(VAE_PRESETS["test"].channels)).eval()
    spec = ModelSpec(name="test-tiny", max_tokens=16)
    folder = tmp_path_factory.mktemp("models") / "test-tiny"
    return save_components(Components(unet, vae, dict(training_scheduler().config), spec), folder)


# A CLIP BPE vocabulary just big enough for lower-case prompts: every letter alone and word-final,
# plus two merges so that "red" is one token.
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_CLIP_VOCAB = ["<|startoftext|>", "<|endoftext|>", *_LETTERS, *(c + "</w>" for c in _LETTERS), "re", "red</w>"]
_CLIP_MERGES = "#version: 0.2\nr e\nre d</w>\n"


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A randomly initialised Stable Diffusion pipeline folder (diffusers layout), built offline.

    The VAE has four blocks, so its scale factor is 8 as in real Stable Diffusion: a 8x8 latent
    gives 64x64 pixels.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd")
    tok_dir = root / "tokenizer-src"
    tok_dir.mkdir()
    (tok_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(_CLIP_VOCAB)}))
    (tok_dir / "merges.txt").write_text(_CLIP_MERGES)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=16)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(32,) * 4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32, sample_size=64)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(_CLIP_VOCAB), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=16, projection_dim=32,
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    folder = root / "sd-tiny"
    pipe.save_pretrained(folder)
    return folder


def synthetic_tunes(n: int = 24) -> list:
    """Small melodies in D major 6/8 and A minor 3/4 (scale fragments), as corpus pieces."""
    from conjure.music.corpus import Piece
    d_major, a_minor = [62, 64, 66, 67, 69, 71, 73, 74], [57, 59, 60, 62, 64, 65, 68, 69]
    pieces = []
    for i in range(n):
        if i % 2:
            bars = [[(p, 12) for p in a_minor[j % 4:j % 4 + 3]] for j in range(8)]
            pieces.append(Piece("test", f"am{i}", f"g{i}", "train", "waltz", "3/4", 9, "minor", bars))
        else:
            bars = [[(p, 12 if k % 2 == 0 else 6) for k, p in enumerate(d_major[j % 3:j % 3 + 4])]
                    for j in range(8)]
            pieces.append(Piece("test", f"dm{i}", f"g{i}", "train", "jig", "6/8", 2, "major", bars))
    return pieces


@pytest.fixture(scope="session")
def tiny_music_model(tmp_path_factory) -> Path:
    """A tiny melody model trained for a few steps on synthetic tunes (a model folder)."""
    from conjure.music.train import train
    tunes = synthetic_tunes()
    return train(tmp_path_factory.mktemp("music-run"), steps=40, preset="test", pieces=tunes, val_pieces=tunes[:4])
