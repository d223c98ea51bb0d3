"""U-Net presets: shapes, sizes and the contract with the text encoder."""

from __future__ import annotations

import pytest
import torch

from conjure.models.unet import UNET_PRESETS, UNetConfig, build_unet
from conjure.text import EMBED_DIM


def test_presets_condition_on_minilm_token_states():
    assert set(UNET_PRESETS) == {"tiny", "small", "test"}
    assert all(cfg.cross_attention_dim == EMBED_DIM for cfg in UNET_PRESETS.values())


@pytest.mark.parametrize("preset, millions", [("tiny", 17.2), ("small", 55.8)])
def test_documented_parameter_counts(preset, millions):
    with torch.device("meta"):   # count without allocating
        unet = build_unet(UNET_PRESETS[preset])
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(millions, rel=0.05)


def test_first_block_is_convolution_only():
    with torch.device("meta"):
        unet = build_unet(UNET_PRESETS["tiny"])
    assert unet.config.down_block_types[0] == "DownBlock2D"
    assert unet.config.up_block_types[-1] == "UpBlock2D"
    assert all(t.startswith("CrossAttn") for t in unet.config.down_block_types[1:])


def test_forward_maps_latents_and_tokens_to_a_latent_sized_prediction():
    torch.manual_seed(0)
    cfg = UNET_PRESETS["test"]
    unet = build_unet(cfg).eval()
    x = torch.randn(2, cfg.in_channels, cfg.sample_size, cfg.sample_size)   # (B, C, H, W)
    ctx = torch.randn(2, 16, EMBED_DIM)                                      # (B, T, D)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 5:] = 0
    with torch.no_grad():
        out = unet(x, torch.tensor([999, 10]), encoder_hidden_states=ctx, encoder_attention_mask=mask).sample
        other = unet(x, torch.tensor([999, 10]), encoder_hidden_states=ctx * 2, encoder_attention_mask=mask).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, other)   # the prompt states reach the output


def test_config_round_trips_into_the_model():
    cfg = UNetConfig(block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=4, sample_size=8)
    with torch.device("meta"):
        unet = build_unet(cfg)
    assert tuple(unet.config.block_out_channels) == (16, 32)
    assert unet.config.out_channels == unet.config.in_channels == 4
