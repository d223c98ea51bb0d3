"""conjure's small CLIP: a CNN image tower and an MLP text tower over frozen MiniLM pooled vectors.

Both towers end in unit vectors of `embed_dim`; a learnable temperature scales their cosine
similarities for the InfoNCE loss (Radford et al., 2021). The text tower reads the 384-d pooled
vectors of conjure's packaged text encoder (`conjure.evaluation.clip.text_vectors`), so
training never runs MiniLM itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from conjure.models.features import conv_trunk, load_folder, save_folder, to_model_input


@dataclass
class ClipConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])   # image tower channels per stage
    embed_dim: int = 256                     # joint embedding width
    text_dim: int = 384                      # MiniLM pooled vector width
    text_hidden: int = 512                   # text tower hidden width
    image_size: int = 64


class ClipModel(nn.Module):
    """encode_image: uint8 (B, 3, H, W) -> (B, E); encode_text: pooled MiniLM (B, 384) -> (B, E); unit length."""

    def __init__(self, config: ClipConfig):
        super().__init__()
        self.config = config
        self.trunk = conv_trunk(config.widths)
        self.image_proj = nn.Sequential(nn.Linear(config.widths[-1] * 2, config.text_hidden), nn.ReLU(inplace=True),
                                        nn.Linear(config.text_hidden, config.embed_dim))
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, config.text_hidden), nn.GELU(),
                                       nn.Linear(config.text_hidden, config.embed_dim))
        self.text_skip = nn.Linear(config.text_dim, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Float input (B, 3, 64, 64) in [-1, 1] -> mean- and max-pooled trunk features (B, 2C)."""
        h = self.trunk(x)                                                    # (B, C, 4, 4)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)    # (B, 2C)

    def project_image(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features (B, 2C) -> unit image embeddings (B, E)."""
        return F.normalize(self.image_proj(features), dim=-1)               # (B, E)

    def encode_image_float(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_image(self.image_features(x))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image_float(to_model_input(images, self.config.image_size))

    def encode_text(self, vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(vectors) + self.text_skip(vectors), dim=-1)   # (B, E)

    def loss(self, image_emb: torch.Tensor, text_emb: torch.Tensor, targets: torch.Tensor | None = None):
        """Symmetric InfoNCE over a batch of matching pairs; `targets` (B, B) may mark several matches per row."""
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        logits = scale * image_emb @ text_emb.t()                            # (B, B)
        if targets is None:
            labels = torch.arange(len(logits), device=logits.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        t = targets / targets.sum(1, keepdim=True)
        tt = targets.t() / targets.t().sum(1, keepdim=True)
        return (-(t * logits.log_softmax(1)).sum(1).mean() - (tt * logits.t().log_softmax(1)).sum(1).mean()) / 2

    def save_pretrained(self, folder: Path, extra: dict | None = None) -> Path:
        return save_folder(self, folder, extra)

    @classmethod
    def from_pretrained(cls, folder: Path) -> "ClipModel":
        return load_folder(cls, ClipConfig, folder)
