"""The U-Net as an ONNX Runtime session, for fp32 sampling on a CPU.

For conjure's small U-Nets ONNX Runtime runs a step about 1.7x faster than the traced, frozen
TorchScript graph (and about 2x faster than eager diffusers) with the same fp32 arithmetic: the
largest difference on conjure-tiny's U-Net is about 2e-6 (benchmarks/text_to_image.py reports the
PSNR of whole images against eager diffusers). Per-operator overhead, not arithmetic, dominates
a 16x16 U-Net on a CPU, and ORT's fused kernels cut it.

The graph is exported once per (weights, latent shape, text shape) with a dynamic batch axis and
cached as a file under `cache/onnx` in conjure's data folder, written atomically, so that later
processes only open it (about 0.5 s). A model held only in memory (no folder, so no weight hash)
is exported to memory each time it is used. The VAE decoder is cached the same way (`OnnxDecoder`):
it is cheap to run either way, but with both graphs cached a process never builds the torch modules,
so it never imports diffusers (see `Components`, lazy loading).
"""

from __future__ import annotations

import torch

from conjure.nn.onnx import OnnxGraph, available, cache_dir  # noqa: F401 (cache_dir: part of this API)

# Above this many parameters an exported graph nears protobuf's 2 GB limit and the model is a GPU
# model anyway: such U-Nets keep the TorchScript path.
MAX_PARAMETERS = 300_000_000


class UNetCall(torch.nn.Module):
    """The U-Net as a plain (x_t, t, states, mask) -> prediction function, for tracing and export."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, states, mask):
        return self.unet(x, t, encoder_hidden_states=states, encoder_attention_mask=mask, return_dict=False)[0]


class DecoderCall(torch.nn.Module):
    """The VAE decoder as a plain (unscaled latents) -> pixels function, for export."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z, return_dict=False)[0]


def suitable(unet: torch.nn.Module | None = None, facts: tuple[int, torch.dtype, str] | None = None) -> bool:
    """ONNX Runtime serves this U-Net: both packages import, the weights are fp32 on the CPU and not huge.
    Give the module, or `facts` = (parameter count, dtype, device type) as `Components.unet_facts` reads them."""
    if facts is None:
        p = next(unet.parameters())
        facts = (sum(q.numel() for q in unet.parameters()), p.dtype, p.device.type)
    count, dtype, device = facts
    return available() and device == "cpu" and dtype == torch.float32 and count <= MAX_PARAMETERS


class OnnxUNet(OnnxGraph):
    """Call as `unet(x, t, states, mask)` with torch tensors; returns the prediction as a torch tensor."""

    kind = "unet"
    inputs = ("x", "t", "states", "mask")
    batched = ("x", "states", "mask")

    def wrap(self, module):
        return UNetCall(module)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x.float().contiguous()
        t = torch.as_tensor(t, dtype=torch.float32).reshape(())
        states = states.float().contiguous()
        mask = mask.float().contiguous()
        return self.run((*x.shape[1:], *states.shape[1:]), (x, t, states, mask))


class OnnxDecoder(OnnxGraph):
    """Call as `decoder(z)` with unscaled (B, C, h, w) latents; returns (B, 3, H, W) pixels in about [-1, 1]."""

    kind = "vae-decoder"
    inputs = ("z",)
    batched = ("z",)

    def wrap(self, module):
        return DecoderCall(module)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        z = z.float().contiguous()
        return self.run(tuple(z.shape[1:]), (z,))
