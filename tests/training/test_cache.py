"""The training cache: VAE latents and token states, computed once and read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conjure.data import load_sources
from conjure.models.vae import TinyVAE
from conjure.training.cache import build_cache


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = TinyVAE(channels=(8, 16, 16), scaling_factor=0.5)
    path = tmp_path_factory.mktemp("vae") / "vae"
    vae.save_pretrained(path)
    return path


def test_cache_holds_latents_and_token_states(tiny_data, vae_dir, tmp_path):
    vae = TinyVAE.from_pretrained(vae_dir).eval()
    cache = build_cache(tmp_path, vae, vae_dir / "diffusion_pytorch_model.safetensors", ["noto"], 64, 16)
    train = load_sources(["noto"], "train")
    n = len(train)
    assert cache.latents.shape == (n, 4, 16, 16) and cache.latents.dtype == torch.float16
    K = len(cache.captions)
    assert cache.states.shape == (K, 16, 384) and cache.masks.shape == (K, 16)
    assert cache.captions[0] == "" and cache.masks[0].sum() == 2          # unconditional: [CLS] [SEP]
    assert len(cache.item_captions) == n
    assert all(1 <= len(ids) <= 4 and all(0 < i < K for i in ids) for ids in cache.item_captions)
    assert cache.captions[cache.item_captions[0][0]] == train.records[0]["captions"][0]
    with torch.no_grad():   # latents are the scaled posterior mean
        x = torch.from_numpy(np.ascontiguousarray(train.images[:1])).permute(0, 3, 1, 2).float() / 127.5 - 1
        expected = vae.encode(x).latent_dist.mode() * 0.5
    torch.testing.assert_close(cache.latents[:1].float(), expected, atol=2e-3, rtol=2e-3)


def test_cache_is_reused_and_keyed_by_its_inputs(tiny_data, vae_dir, tmp_path):
    vae = TinyVAE.from_pretrained(vae_dir).eval()
    weights = vae_dir / "diffusion_pytorch_model.safetensors"
    first = build_cache(tmp_path, vae, weights, ["noto"], 64, 16)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2   # .safetensors + .json
    again = build_cache(tmp_path, vae, weights, ["noto"], 64, 16)
    assert torch.equal(first.latents, again.latents) and torch.equal(first.states, again.states)
    assert again.captions == first.captions and again.item_captions == first.item_captions
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    build_cache(tmp_path, vae, weights, ["noto"], 64, 8)
    assert len(list(tmp_path.iterdir())) == 4   # a different token count is a different cache
