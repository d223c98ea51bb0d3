"""Build and load the local dataset cache: one folder per source with images.npy and items.jsonl."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from conjure.config import Settings, get_settings
from conjure.data.sources import SOURCES, Item

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)   # by concept group, not by item


def split_of(group: str, labels: dict[str, str] | None = None) -> str:
    """Deterministic split for a concept group: the same group always lands in the same split."""
    if labels and labels.get("official_split") == "test":
        return "test"
    u = int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if labels and labels.get("official_split") == "train":   # official test set stays the test split
        return "train" if u < 0.95 else "validation"
    return "train" if u < SPLIT_FRACTIONS[0] else ("validation" if u < sum(SPLIT_FRACTIONS[:2]) else "test")


def source_dir(source: str, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / source


def build_source(source: str, settings: Settings | None = None, limit: int | None = None) -> Path:
    """Render one source into the cache (atomically: a half-built source is never visible)."""
    settings = settings or get_settings()
    if source not in SOURCES:
        raise ValueError(f"unknown data source '{source}'; choose from: {', '.join(SOURCES)}")
    info = SOURCES[source]
    images, records = [], []
    for i, item in enumerate(tqdm(info.build(settings), desc=f"building {source}", unit="img")):
        if limit is not None and i >= limit:
            break
        images.append(item.image)
        records.append({"captions": item.captions, "name": item.name, "source": item.source,
                        "licence": item.licence, "group": item.group, "labels": item.labels,
                        "split": split_of(item.group, item.labels)})
    if not records:
        raise ValueError(f"data source '{source}' produced no items (limit={limit}); nothing was written")
    out = source_dir(source, settings)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "images.npy", np.stack(images))
    with open(tmp / "items.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    counts = {s: sum(r["split"] == s for r in records) for s in SPLITS}
    (tmp / "meta.json").write_text(json.dumps(
        {"source": source, "licence": info.licence, "package": info.package, "count": len(records),
         "splits": counts, "image_shape": list(images[0].shape)}, indent=1))
    if out.exists():
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
    tmp.rename(out)
    write_attribution(settings)
    return out


def write_attribution(settings: Settings | None = None) -> Path:
    """List every built source with its package, licence and item count in ATTRIBUTION.md."""
    settings = settings or get_settings()
    lines = ["# Attribution for the conjure dataset cache", "",
             "Every item keeps its source and licence in items.jsonl. Sources built here:", "",
             "| source | package | licence | items |", "|---|---|---|---|"]
    for name in SOURCES:
        meta = source_dir(name, settings) / "meta.json"
        if meta.is_file():
            m = json.loads(meta.read_text())
            lines.append(f"| {name} | {m['package']} | {m['licence']} | {m['count']} |")
    lines += ["", "Noto Emoji images: Google, Apache-2.0. Twemoji graphics: Twitter/X and jdecked, CC BY 4.0 "
              "(https://creativecommons.org/licenses/by/4.0/); names from emojibase-data (MIT). "
              "Material Design Icons: Pictogrammers, Apache-2.0. Tabler Icons: MIT. Lucide: ISC. "
              "Bootstrap Icons: MIT. Fashion-MNIST: Zalando Research, MIT.", ""]
    path = settings.data_dir / "ATTRIBUTION.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


@dataclass
class Dataset:
    """Images (N, H, W, 3) uint8 with one record dict per image."""

    images: np.ndarray
    records: list[dict]

    def __len__(self) -> int:
        return len(self.records)


def load_source(source: str, split: str | None = None, settings: Settings | None = None) -> Dataset:
    d = source_dir(source, settings)
    if not (d / "images.npy").is_file():
        raise FileNotFoundError(f"data source '{source}' is not built; run: conjure data build --source {source}")
    images = np.load(d / "images.npy", mmap_mode="r")
    records = [json.loads(line) for line in (d / "items.jsonl").read_text().splitlines()]
    idx = [i for i, r in enumerate(records) if split is None or r["split"] == split]
    return Dataset(np.asarray(images[idx]), [records[i] for i in idx])


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, H, W, 3) uint8 images to (N, size, size, 3) with a bicubic filter."""
    if images.shape[1] == size:
        return images
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


def load_sources(sources: list[str], split: str | None = None, settings: Settings | None = None,
                 size: int = 64) -> Dataset:
    """Load several sources at one image size (sources stored at another size are resized)."""
    parts = [load_source(s, split, settings) for s in sources]
    return Dataset(np.concatenate([resize_images(p.images, size) for p in parts]),
                   [r for p in parts for r in p.records])
