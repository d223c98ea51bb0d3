"""MiniLM (the packaged all-MiniLM-L6-v2) in plain torch: its embeddings and any run of its six layers.

Its base layers load from the package's safetensors (offline, a file in the pip package), so that a model which
fine-tunes only the top layers stores only those: the safety classifier (`conjure.safety.minilm`) and
conjure-clip's text tower (`conjure.models.clip`). Neither imports transformers.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

N_LAYERS = 6          # MiniLM-L6
N_HEADS = 12
DIM = 384
FFN = 1536
EPS = 1e-12


class Block(nn.Module):
    """One post-LayerNorm BERT layer with the parameter names of transformers' BertLayer.

    (B, T, D) states and a (B, T) 0/1 mask -> (B, T, D) states."""

    def __init__(self):
        super().__init__()
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict({"query": nn.Linear(DIM, DIM), "key": nn.Linear(DIM, DIM),
                                   "value": nn.Linear(DIM, DIM)}),
            "output": nn.ModuleDict({"dense": nn.Linear(DIM, DIM), "LayerNorm": nn.LayerNorm(DIM, eps=EPS)})})
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(DIM, FFN)})
        self.output = nn.ModuleDict({"dense": nn.Linear(FFN, DIM), "LayerNorm": nn.LayerNorm(DIM, eps=EPS)})

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        att = self.attention["self"]
        q, k, v = (att[n](x).view(b, t, N_HEADS, DIM // N_HEADS).transpose(1, 2)     # (B, H, T, d)
                   for n in ("query", "key", "value"))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DIM // N_HEADS) + bias, dim=-1)   # (B, H, T, T)
        ctx = (w @ v).transpose(1, 2).reshape(b, t, DIM)                               # (B, T, D)
        out = self.attention["output"]
        h = out["LayerNorm"](out["dense"](ctx) + x)
        ffn = self.output["dense"](nn.functional.gelu(self.intermediate["dense"](h)))
        return self.output["LayerNorm"](ffn + h)


def attention_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B, 1, 1, T) additive bias that hides padding keys."""
    return (1.0 - mask[:, None, None, :].to(torch.float32)) * -1e9


def pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of (B, T, D) states, unit length: (B, D), as sentence-transformers pools."""
    m = mask.unsqueeze(-1).to(states.dtype)
    v = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)                                # (B, D)
    return nn.functional.normalize(v, dim=-1)


class MiniLM(nn.Module):
    """MiniLM's embeddings and layers `first`..`last` - 1: ids (B, T) and mask -> states (B, T, D)."""

    def __init__(self, first: int = 0, last: int = N_LAYERS):
        super().__init__()
        self.first = first
        self.embeddings = nn.ModuleDict({"word_embeddings": nn.Embedding(30522, DIM),
                                         "position_embeddings": nn.Embedding(512, DIM),
                                         "token_type_embeddings": nn.Embedding(2, DIM),
                                         "LayerNorm": nn.LayerNorm(DIM, eps=EPS)}) if first == 0 else None
        self.layer = nn.ModuleList(Block() for _ in range(first, last))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = e["word_embeddings"](ids) + e["position_embeddings"](pos)[None] + e["token_type_embeddings"].weight[0]
        return e["LayerNorm"](x)                                                       # (B, T, D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: ids (B, T) when this stack starts at the embeddings, else states (B, T, D)."""
        x = self.embed(x) if self.embeddings is not None else x
        bias = attention_bias(mask)
        for block in self.layer:
            x = block(x, bias)
        return x

    def load_package(self, path: Path | None = None) -> "MiniLM":
        """Load this stack's weights from the packaged MiniLM (offline: a file in the pip package)."""
        from safetensors.torch import load_file

        from conjure.text.encoder import model_path
        raw = load_file(str((path or model_path()) / "model.safetensors"))
        state = {}
        for k, v in raw.items():
            if k.startswith("embeddings.") and self.embeddings is not None and "position_ids" not in k:
                state[k] = v
            elif k.startswith("encoder.layer."):
                i, rest = k[len("encoder.layer."):].split(".", 1)
                if self.first <= int(i) < self.first + len(self.layer):
                    state[f"layer.{int(i) - self.first}.{rest}"] = v
        self.load_state_dict(state)
        return self.eval().requires_grad_(False)


@lru_cache(maxsize=4)
def packaged_stack(first: int, last: int) -> MiniLM:
    """The package's frozen layers first..last - 1 (embeddings when first is 0), loaded once per process."""
    return MiniLM(first, last).load_package()
