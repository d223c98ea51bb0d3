"""A small decoder-only transformer over VQ codes (after nanoGPT): the condition is a prefix token,
then the 49 codes of a 7x7 grid in raster order."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from conjure.nn.blocks import CondAdapter


@dataclass
class ARConfig:
    vocab: int = 256                # VQ codebook size
    length: int = 49                # codes per image (7x7)
    dim: int = 128                  # model width D
    layers: int = 4
    heads: int = 4


AR_PRESETS = {"base": ARConfig(), "test": ARConfig(vocab=16, dim=16, layers=1, heads=2)}


class Block(nn.Module):
    def __init__(self, c: ARConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.qkv, self.proj = nn.Linear(c.dim, 3 * c.dim), nn.Linear(c.dim, c.dim)
        self.mlp = nn.Sequential(nn.Linear(c.dim, 4 * c.dim), nn.GELU(), nn.Linear(4 * c.dim, c.dim))
        self.heads = c.heads

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D). With a `cache` dict, x holds only new positions; keys and values of the
        earlier ones are read from the cache and the new ones appended (incremental decoding)."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        causal = k.shape[2] == t                                                 # no cache, or the first call
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)           # (B, H, T, D/H)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))                    # (B, T, D)
        return x + self.mlp(self.ln2(x))


class CodeTransformer(nn.Module):
    """(text (B, 384), codes (B, L)) -> next-code logits (B, L, V): position i predicts code i from the
    prefix and codes < i."""

    def __init__(self, c: ARConfig):
        super().__init__()
        self.config = c
        self.cond = CondAdapter(c.dim)
        self.tok = nn.Embedding(c.vocab, c.dim)
        self.pos = nn.Parameter(torch.zeros(c.length, c.dim))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln, self.head = nn.LayerNorm(c.dim), nn.Linear(c.dim, c.vocab, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, text: torch.Tensor, codes: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """text (B, 384), the first k codes (B, k) with 0 <= k < L -> logits for codes 0..k (B, k + 1, V)."""
        prefix = self.cond(text, drop)[:, None]                                   # (B, 1, D)
        k = codes.shape[1]
        x = torch.cat([prefix, self.tok(codes) + self.pos[:k]], 1)                 # (B, k + 1, D)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))                                              # (B, k + 1, V)

    @torch.no_grad()
    def generate(self, text: torch.Tensor, gen: torch.Generator, guidance: float = 1.0,
                 temperature: float = 1.0) -> tuple[torch.Tensor, int]:
        """Sample L codes one at a time with a key/value cache: text (B, 384) -> codes (B, L) and network
        evaluations per image (L, doubled with classifier-free guidance)."""
        b, c = len(text), self.config
        guided = guidance != 1.0
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]) if guided else None
        x = self.cond(torch.cat([text, text]) if guided else text, drop)[:, None]     # (B', 1, D)
        caches = [{} for _ in self.blocks]
        codes = []
        for i in range(c.length):
            h = x
            for blk, cache in zip(self.blocks, caches):
                h = blk(h, cache)
            logits = self.head(self.ln(h[:, -1]))                                     # (B', V)
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + guidance * (cond - uncond)
            nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen)   # (B, 1)
            codes.append(nxt)
            tok = self.tok(nxt) + self.pos[i]                                           # (B, 1, D)
            x = torch.cat([tok, tok]) if guided else tok
        return torch.cat(codes, 1), c.length * (2 if guided else 1)

    def loss(self, text: torch.Tensor, codes: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-code cross-entropy (nats) over the L codes of (B, L)."""
        logits = self(text, codes[:, :-1], drop)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
