"""In-memory data for the evaluation networks: uint8 image tensors, label indices per head, captions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from conjure.data.build import load_sources

EMOJI_SOURCES = ("noto", "twemoji")
# head name -> (sources it covers, the record label it reads, label values that mean "no label")
HEAD_LABELS: dict[str, tuple[tuple[str, ...] | None, str | None, tuple[str, ...]]] = {
    "source": (None, None, ()),
    "emoji_category": (EMOJI_SOURCES, "category", ("Unknown",)),
    "emoji_subcategory": (EMOJI_SOURCES, "subcategory", ("unknown",)),
    "skin_tone": (EMOJI_SOURCES, "skin_tone", ()),
    "gender": (EMOJI_SOURCES, "gender", ()),
    "mdi_category": (("mdi",), "category", ("none",)),
    "tabler_category": (("tabler",), "category", ("none",)),
    "fashion_class": (("fashion_mnist",), "class", ()),
}


def label_of(record: dict, head: str) -> str | None:
    """The class name a record has for one head, or None when the head does not apply to it."""
    sources, key, missing = HEAD_LABELS[head]
    if sources is not None and record["source"] not in sources:
        return None
    value = record["source"] if key is None else record["labels"].get(key)
    return None if value is None or value in missing else value


def head_vocab(records: list[dict], heads: list[str]) -> dict[str, list[str]]:
    """Sorted class names per head, from the (training) records; a head with under two classes is dropped."""
    vocab = {}
    for h in heads:
        names = sorted({v for r in records if (v := label_of(r, h)) is not None})
        if len(names) >= 2:
            vocab[h] = names
    return vocab


def label_tensor(records: list[dict], vocab: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Per head, a (N,) long tensor of class indices; -1 where the head does not apply or the class is unseen."""
    out = {}
    for h, names in vocab.items():
        index = {n: i for i, n in enumerate(names)}
        out[h] = torch.tensor([index.get(label_of(r, h), -1) if label_of(r, h) is not None else -1
                               for r in records], dtype=torch.long)
    return out


@dataclass
class ImageSet:
    images: torch.Tensor      # (N, 3, 64, 64) uint8
    records: list[dict]


def load_image_set(sources: list[str], split: str, size: int = 64, per_source_limit: dict | None = None,
                   seed: int = 0) -> ImageSet:
    """Load a split of several sources into memory once; `per_source_limit` subsamples big sources
    (Fashion-MNIST) with a fixed seed."""
    parts_img, parts_rec = [], []
    rng = np.random.default_rng(seed)
    for s in sources:
        d = load_sources([s], split, size=size)
        idx = np.arange(len(d))
        limit = (per_source_limit or {}).get(s)
        if limit is not None and limit < len(idx):
            idx = np.sort(rng.choice(idx, limit, replace=False))
        parts_img.append(torch.from_numpy(np.ascontiguousarray(d.images[idx])).permute(0, 3, 1, 2).contiguous())
        parts_rec += [d.records[i] for i in idx]
    return ImageSet(torch.cat(parts_img), parts_rec)


def random_shift(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each uint8 image (B, 3, H, W) by up to `max_shift` px, filling with white. The offsets are drawn
    on the CPU from `gen`, so a run draws the same shifts on any device; the crop is one gather."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, value=255)
    offs = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=gen).to(images.device)
    rows = offs[:, :1] + torch.arange(h, device=images.device)                  # (B, H)
    cols = offs[:, 1:] + torch.arange(w, device=images.device)                  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
