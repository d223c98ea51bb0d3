"""TinyVAE: factor-4 latents, the diffusers interface, identity-initialised residuals, save/load."""

from __future__ import annotations

import torch

from conjure.models.vae import VAE_PRESETS, TinyVAE, _Res


def _vae() -> TinyVAE:
    torch.manual_seed(0)
    return TinyVAE(channels=tuple(VAE_PRESETS["test"].channels)).eval()


def test_encode_and_decode_shapes():
    vae = _vae()
    x = torch.rand(2, 3, 64, 64) * 2 - 1                          # (B, 3, H, W)
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
        assert dist.mean.shape == (2, 4, 16, 16)                  # (B, C, H/4, W/4)
        assert vae.decode(dist.mode()).sample.shape == (2, 3, 64, 64)
        (dist_tuple,) = vae.encode(x, return_dict=False)
        assert torch.equal(dist_tuple.mean, dist.mean)
        recon, d = vae(x, sample_posterior=False)
    assert recon.shape == x.shape and torch.equal(d.mode(), dist.mode())


def test_residual_blocks_start_as_identity():
    vae = _vae()
    blocks = [m for m in vae.modules() if isinstance(m, _Res)]
    assert blocks
    x = torch.randn(1, blocks[0].block[1].in_channels, 4, 4)
    assert torch.equal(blocks[0](x), x)


def test_presets():
    assert VAE_PRESETS["test"].channels == (8, 16, 16)
    assert VAE_PRESETS["tiny"].latent_channels == 4


def test_save_load_round_trip(tmp_path):
    vae = _vae()
    vae.register_to_config(scaling_factor=0.5)
    vae.save_pretrained(tmp_path / "vae")
    loaded = TinyVAE.from_pretrained(tmp_path / "vae").eval()
    assert loaded.config.scaling_factor == 0.5 and tuple(loaded.config.channels) == (8, 16, 16)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(x).latent_dist.mode()).sample,
                           vae.decode(vae.encode(x).latent_dist.mode()).sample)
