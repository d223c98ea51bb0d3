"""conjure's small CLIP: a CNN image tower and a text tower over conjure's packaged MiniLM.

Both towers end in unit vectors of `embed_dim`; a learnable temperature scales their cosine
similarities for the InfoNCE loss (Radford et al., 2021). The text tower is an MLP with a linear skip over
384-d mean-pooled MiniLM vectors. With `text_tune_layers` = k > 0 the model also carries its own copy of
MiniLM's top k layers, fine-tuned, between the package's frozen lower layers and the pooling: mean pooling
mixes the words before the MLP sees them, and a tuned layer lets "medium dark skin tone" or "outline" weigh
in first. Use `embed_captions` for text: it runs whichever path the model has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from conjure.models.features import conv_trunk, init_conv_linear, load_folder, save_folder, to_model_input
from conjure.text.minilm import N_LAYERS, MiniLM, packaged_stack, pool


@dataclass
class ClipConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])   # image tower channels per stage
    embed_dim: int = 256                     # joint embedding width
    text_dim: int = 384                      # MiniLM pooled vector width
    text_hidden: int = 512                   # text tower hidden width
    image_size: int = 64
    text_tune_layers: int = 0                # MiniLM's top layers carried (fine-tuned) in this model; 0 = none
    text_tokens: int = 32                    # captions are cut to this many tokens


class ClipModel(nn.Module):
    """encode_image: uint8 (B, 3, H, W) -> (B, E); embed_captions: list of N captions -> (N, E); unit length."""

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
        if not 0 <= config.text_tune_layers <= N_LAYERS:
            raise ValueError(f"text_tune_layers must be 0..{N_LAYERS}, not {config.text_tune_layers}")
        self.text_top = MiniLM(N_LAYERS - config.text_tune_layers) if config.text_tune_layers else None

    def init_weights(self) -> None:
        init_conv_linear(self)

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
        """Unit-length pooled MiniLM vectors (B, 384) -> unit text embeddings (B, E)."""
        return F.normalize(self.text_proj(vectors) + self.text_skip(vectors), dim=-1)   # (B, E)

    def encode_states(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states (B, T, 384) from the package's frozen layers below `text_top`, and their (B, T) mask ->
        unit text embeddings (B, E), through the tuned top layers, pooling and the MLP."""
        return self.encode_text(pool(self.text_top(states, mask), mask))

    def init_text_top_from_package(self) -> "ClipModel":
        """Start the tuned top layers from the packaged MiniLM's weights (before training)."""
        if self.text_top is not None:
            self.text_top.load_state_dict(packaged_stack(self.text_top.first, N_LAYERS).state_dict())
            self.text_top.requires_grad_(True)
        return self

    @torch.no_grad()
    def base_states(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> the package's frozen lower layers' token states (N, text_tokens, 384) and mask (N, T)."""
        from conjure.text import get_text_encoder
        ids, mask = get_text_encoder().tokenizer(captions, self.config.text_tokens, pad="max_length")
        return packaged_stack(0, self.text_top.first)(ids, mask), mask

    @torch.no_grad()
    def embed_captions(self, captions: list[str], cache_dir: Path | None = None, batch: int = 256) -> torch.Tensor:
        """Captions -> unit text embeddings (N, E). Without tuned layers the pooled vectors come from
        `conjure.evaluation.clip.text_vectors` (cached under `cache_dir` when given)."""
        was_training = self.training
        self.eval()
        if self.text_top is None:
            from conjure.evaluation.clip import text_vectors
            out = self.encode_text(text_vectors(captions, cache_dir))
        else:
            out = torch.zeros(len(captions), self.config.embed_dim)
            for i in range(0, len(captions), batch):
                states, mask = self.base_states(captions[i:i + batch])
                out[i:i + batch] = self.encode_states(states, mask)
        self.train(was_training)
        return out

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
