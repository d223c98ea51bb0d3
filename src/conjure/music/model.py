"""The melody model: a small decoder-only transformer over `conjure.music.tokens` (the lab's AR blocks), with
grammar-masked nucleus sampling and a key-value cache."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from conjure.models.ar import Block
from conjure.music import tokens as T


@dataclass
class MusicConfig:
    vocab: int = len(T.VOCAB)
    length: int = 512            # context in tokens (header included)
    dim: int = 128
    layers: int = 4
    heads: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


MUSIC_PRESETS = {"base": MusicConfig(), "test": MusicConfig(length=64, dim=32, layers=1, heads=2)}


class MelodyTransformer(nn.Module):
    """ids (B, L) -> next-token logits (B, L, V)."""

    def __init__(self, c: MusicConfig):
        super().__init__()
        self.config = c
        self.tok = nn.Embedding(c.vocab, c.dim)
        self.pos = nn.Parameter(torch.zeros(c.length, c.dim))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln, self.head = nn.LayerNorm(c.dim), nn.Linear(c.dim, c.vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, ids: torch.Tensor, caches: list[dict] | None = None, start: int = 0) -> torch.Tensor:
        x = self.tok(ids) + self.pos[start:start + ids.shape[1]]
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if caches is None else caches[i])
        return self.head(self.ln(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate(self, cond: T.Condition, bars: int, gen: torch.Generator, temperature: float = 1.0,
                 top_p: float = 0.95, min_bars: int = 4, strict_bars: bool = False,
                 key_guidance: float = 0.0) -> list[int]:
        """Sample a body after the condition's header until EOS, `bars` bar lines have closed, or the context is
        full. Masks keep the token grammar (an event, then its duration) and forbid EOS before `min_bars`.

        With `strict_bars`, every bar after the first (which may be a pickup) is filled to exactly the meter's
        length: durations that would overflow the bar are masked, and the bar line (or the end) is the only
        choice once it is full. The rhythm inside the bar, the key and the melody stay the model's own.

        `key_guidance` g > 0 multiplies each pitch's probability by (w / mean w) ** g, w the asked key's
        Krumhansl-Kessler weight for that pitch class: a product with a key-profile prior (0 = the model alone)."""
        from conjure.music.analysis import bar_ticks
        self.eval()
        bias = key_bias(cond, len(T.VOCAB), key_guidance)
        ids = cond.tokens()
        caches: list[dict] = [{} for _ in self.blocks]
        logits = self(torch.tensor([ids]), caches)[0, -1]
        n_bars, filled, length = 0, 0, bar_ticks(cond.meter)
        while len(ids) < self.config.length:
            mask = torch.full_like(logits, float("-inf"))
            for allowed in T.allowed_next(ids[-1]):
                mask[list(allowed)] = 0.0
            if n_bars < min_bars:
                mask[T.EOS] = float("-inf")
            if len(ids) == T.HEADER:
                mask[:] = float("-inf")
                mask[T.BAR] = 0.0                                    # the body opens with a bar line
            elif strict_bars and n_bars >= 1:
                room = length - filled
                if ids[-1] in T.DUR_IDS or ids[-1] == T.BAR:         # choosing an event, a bar line or the end
                    if room > 0:
                        mask[T.EOS] = float("-inf")
                        if n_bars > 1 or filled == 0:                 # only the first bar may be a short pickup
                            mask[T.BAR] = float("-inf")
                    else:
                        keep = mask[[T.BAR, T.EOS]].clone()
                        mask[:] = float("-inf")
                        mask[[T.BAR, T.EOS]] = keep
                else:                                                # choosing a duration: no overflow
                    mask[T.DUR_IDS.start + min(room, len(T.DUR_IDS)):T.DUR_IDS.stop] = float("-inf")
            nxt = _nucleus(logits / max(temperature, 1e-4) + mask + bias, top_p, gen)
            if nxt == T.EOS:
                break
            if nxt == T.BAR:
                n_bars += 1
                filled = 0
                if n_bars > bars:
                    break
            elif nxt in T.DUR_IDS:
                filled += nxt - T.DUR_IDS.start + 1
            ids.append(nxt)
            logits = self(torch.tensor([[nxt]]), caches, start=len(ids) - 1)[0, -1]
        return ids


def key_bias(cond: T.Condition, vocab: int, strength: float) -> torch.Tensor:
    """Log-prior over tokens: strength * log(w / mean w) on each pitch token, w the Krumhansl-Kessler weight of
    the pitch class in the asked key; zero on every other token."""
    from conjure.music.analysis import KK_MAJOR, KK_MINOR
    bias = torch.zeros(vocab)
    if strength:
        profile = KK_MAJOR if cond.mode == "major" else KK_MINOR
        rel = torch.log(torch.tensor(profile / profile.mean(), dtype=torch.float32))
        pitches = torch.tensor([T.PITCHES[i - T.PITCH_IDS.start] for i in T.PITCH_IDS])
        bias[T.PITCH_IDS.start:T.PITCH_IDS.stop] = strength * rel[(pitches - cond.tonic) % 12]
    return bias


def _nucleus(logits: torch.Tensor, top_p: float, gen: torch.Generator) -> int:
    probs = torch.softmax(logits.float(), -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))
