"""Latent U-Net presets: diffusers' UNet2DConditionModel with cross-attention on MiniLM token states."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from diffusers import UNet2DConditionModel


@dataclass
class UNetConfig:
    sample_size: int = 16                              # latent H = W
    in_channels: int = 4                               # latent C
    block_out_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    cross_attention_dim: int = 384                     # MiniLM token-state width
    norm_num_groups: int = 32


UNET_PRESETS = {
    "tiny": UNetConfig(),                                                         # about 17M parameters
    "small": UNetConfig(block_out_channels=(96, 192, 384), layers_per_block=2),   # about 56M
    "test": UNetConfig(block_out_channels=(32, 32, 32), norm_num_groups=8, attention_head_dim=4),
}


def build_unet(cfg: UNetConfig) -> UNet2DConditionModel:
    """A U-Net whose first block is convolution only (cheapest at full latent size)."""
    kw = asdict(cfg)
    kw["block_out_channels"] = tuple(kw["block_out_channels"])
    n = len(cfg.block_out_channels)
    return UNet2DConditionModel(
        out_channels=cfg.in_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        **kw,
    )
