"""Precomputed training inputs: VAE latents per image and MiniLM token states per caption.

With both cached, a diffusion training step costs only the U-Net. The cache is keyed by the
VAE's weights hash and the caption list, and lives in the run directory's parent cache folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from conjure.data import load_sources
from conjure.text import TextEncoder


@dataclass
class TrainCache:
    latents: torch.Tensor          # (N, C, h, w) float16, already multiplied by the VAE scaling factor
    item_captions: list[list[int]] # per image: indices into `states`
    states: torch.Tensor           # (K, T, 384) float16 token states of every distinct caption ("" at 0)
    masks: torch.Tensor            # (K, T) int8 attention masks
    captions: list[str]


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_cache(cache_dir: Path, vae, vae_weights: Path, sources: list[str], image_size: int,
                max_tokens: int, split: str = "train", captions_per_item: int = 4) -> TrainCache:
    key = hashlib.sha256(json.dumps([file_hash(vae_weights), sources, image_size, max_tokens, split,
                                     captions_per_item]).encode()).hexdigest()[:16]
    path = cache_dir / f"train-cache-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    from safetensors.torch import load_file, save_file
    if path.is_file() and meta_path.is_file():
        t = load_file(path)
        meta = json.loads(meta_path.read_text())
        return TrainCache(t["latents"], meta["item_captions"], t["states"], t["masks"], meta["captions"])

    data = load_sources(sources, split, size=image_size)
    # --- latents: the posterior mean, scaled (B, C, h, w)
    lat = []
    with torch.no_grad():
        for i in tqdm(range(0, len(data), 256), desc="caching latents"):
            x = torch.from_numpy(np.ascontiguousarray(data.images[i:i + 256])).permute(0, 3, 1, 2).float() / 127.5 - 1
            lat.append((vae.encode(x).latent_dist.mode() * vae.config.scaling_factor).half())
    latents = torch.cat(lat)
    # --- token states for every distinct caption; index 0 is the empty (unconditional) prompt
    captions, index, item_captions = [""], {"": 0}, []
    for r in data.records:
        ids = []
        for c in r["captions"][:captions_per_item]:
            if c not in index:
                index[c] = len(captions)
                captions.append(c)
            ids.append(index[c])
        item_captions.append(ids)
    enc = TextEncoder()
    states, masks = [], []
    for i in tqdm(range(0, len(captions), 512), desc="caching text states"):
        s, m = enc.encode(captions[i:i + 512], max_tokens=max_tokens)
        states.append(s.half())
        masks.append(m.to(torch.int8))
    cache = TrainCache(latents, item_captions, torch.cat(states), torch.cat(masks), captions)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_file({"latents": cache.latents.contiguous(), "states": cache.states.contiguous(),
               "masks": cache.masks.contiguous()}, str(path))
    meta_path.write_text(json.dumps({"item_captions": item_captions, "captions": captions}))
    return cache
