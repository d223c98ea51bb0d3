"""The safety classifier with MiniLM's top layers fine-tuned: token ids (B, T) -> probabilities (B, K).

MiniLM's layers come from `conjure.text.minilm` (plain torch), so that its base layers load from the package's
safetensors and only the fine-tuned top layers and the head are stored in models/safety-prompt.
A head over frozen mean-pooled vectors cannot tell "bomb nachos" from "a bomb": mean pooling has already mixed
the words by then; a fine-tuned top layer lets each token's state depend on its neighbours before pooling.

On a CPU the whole stack runs under ONNX Runtime (conjure.nn.onnx), its graph cached under a key that includes
the fine-tuned weights' hash; torch runs it otherwise. Neither imports transformers.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from conjure.nn.onnx import OnnxGraph, available
from conjure.safety.classifier import CONFIG_FILE, WEIGHTS_FILE, ClassifierConfig, PromptClassifier
from conjure.text.minilm import DIM, N_LAYERS, MiniLM, packaged_stack, pool

MAX_TOKENS = 128      # as conjure.safety.classifier.embed


class TunedClassifier(nn.Module):
    """Frozen MiniLM layers 0..B-1 from the package, fine-tuned layers B..5 and the MLP head.

    `base` may be None while training on cached base states; `scores` needs it."""

    def __init__(self, config: ClassifierConfig, base: MiniLM | None = None):
        super().__init__()
        self.config = config
        first = N_LAYERS - config.finetune_layers
        self.top = MiniLM(first, N_LAYERS)
        self.head = PromptClassifier(config)
        self.base = [base]                 # a list: the base is not a submodule, so state_dict holds only ours
        self.model_hash = "unsaved"
        self._graph: OnnxGraph | None = None
        self._lock = threading.Lock()

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base states (B, T, D) -> (logits (B, K), pooled unit vectors (B, D))."""
        v = pool(self.top(states, mask), mask)
        return self.head(v), v

    def init_from_package(self) -> "TunedClassifier":
        """Start the fine-tuned layers from the package's weights (before training)."""
        self.top.load_state_dict(packaged_stack(self.top.first, N_LAYERS).state_dict())
        return self

    def full(self) -> nn.Module:
        """(ids, mask) -> (B, K + D): probabilities, then the pooled vector; one tensor for export."""
        return _Full(self)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    @torch.inference_mode()
    def scores(self, prompts: list[str], encoder=None, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """Prompts -> (probabilities (N, K), pooled fine-tuned vectors (N, D)), float32 numpy; batches of prompts
        of similar length, each padded to its longest, as `embed` does."""
        if encoder is None:
            from conjure.text import get_text_encoder
            encoder = get_text_encoder()
        k = len(self.labels)
        out = np.zeros((len(prompts), k + DIM), dtype=np.float32)
        order = np.argsort([len(p) for p in prompts], kind="stable")
        for s in range(0, len(prompts), batch_size):
            idx = order[s:s + batch_size]
            ids, mask = encoder.tokenizer([prompts[i] for i in idx], MAX_TOKENS, pad="longest")
            out[idx] = self._run(ids, mask, encoder).numpy()
        return out[:, :k], out[:, k:]

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, encoder) -> torch.Tensor:
        if getattr(encoder, "backend", "torch") == "onnx" and available():
            if self._graph is None:
                with self._lock:
                    if self._graph is None:
                        self._graph = OnnxTuned(lambda: self.eval().full(), self.model_hash, encoder.onnx_cache)
            return self._graph(ids, mask)
        return self.eval().full()(ids, mask)

    def save(self, folder: Path, extra: dict | None = None, half: bool = True) -> Path:
        """The fine-tuned layers and the head only (fp16 layers when `half`: about 3.5 MB a layer)."""
        from safetensors.torch import save_file
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: (v.half() if half and k.startswith("top.") else v).contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        cfg = asdict(self.config) | {"labels": list(self.config.labels)} | (extra or {})
        (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path, config: ClassifierConfig) -> "TunedClassifier":
        from safetensors.torch import load_file
        path = folder / WEIGHTS_FILE
        model = cls(config)
        model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        model.model_hash = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return model.eval().requires_grad_(False)


class _Full(nn.Module):
    def __init__(self, tuned: TunedClassifier):
        super().__init__()
        self.tuned = tuned
        if tuned.base[0] is None:
            tuned.base[0] = packaged_stack(0, tuned.top.first)
        self.base = tuned.base[0]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits, v = self.tuned(self.base(ids, mask), mask)
        return torch.cat([torch.softmax(logits, dim=-1), v], dim=-1)                   # (B, K + D)


class OnnxTuned(OnnxGraph):
    """The whole fine-tuned classifier as one graph: (ids, mask) int64 (B, T) -> (B, K + D)."""

    kind = "safety-tuned"
    inputs = ("input_ids", "attention_mask")

    def wrap(self, module):
        return module

    def dynamic_axes(self):
        return {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                "y": {0: "batch"}}

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.run(("T",), (ids.contiguous(), mask.contiguous()))
