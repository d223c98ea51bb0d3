"""Text vectors for conjure's CLIP, CLIP score, and caption retrieval (R@k) among distinct captions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

TEXT_TOKENS = 32   # captions and prompts are short; pooled vectors use at most this many tokens


@torch.no_grad()
def text_vectors(captions: list[str], cache_dir: Path | None = None, batch: int = 256) -> torch.Tensor:
    """Unit-length mean-pooled MiniLM vectors (N, 384) for captions, cached by the caption list's hash."""
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(json.dumps([TEXT_TOKENS, captions]).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"text-vectors-{key}.safetensors"
        if path.is_file():
            from safetensors.torch import load_file
            return load_file(str(path))["vectors"]
    from conjure.text import get_text_encoder
    enc = get_text_encoder()
    order = sorted(range(len(captions)), key=lambda i: len(captions[i]))   # similar lengths share a batch
    vectors = torch.zeros(len(captions), 384)
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        vectors[idx] = enc.pooled([captions[j] for j in idx], max_tokens=TEXT_TOKENS)   # padded to the longest
    if path is not None:
        from safetensors.torch import save_file
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": vectors.contiguous()}, str(path))
    return vectors


@torch.no_grad()
def embed_images(model, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> unit image embeddings (N, E)."""
    model.eval()
    return torch.cat([model.encode_image(images[i:i + batch]) for i in range(0, len(images), batch)])


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Per-pair CLIP score, 100 * max(cos, 0) as in Hessel et al. (2021) with w = 100: (N,)."""
    return 100 * (image_emb * text_emb).sum(-1).clamp(min=0)


def recall_at_k(sim: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Image -> caption retrieval: sim (N, M), target (N,) column of the right caption. A tie with the
    right caption counts against it (its rank is the number of captions scoring at least as high)."""
    right = sim.gather(1, target[:, None])                       # (N, 1)
    rank = (sim >= right).sum(1)                                 # 1 = strictly best
    return {f"r{k}": float((rank <= k).float().mean()) for k in ks}


def retrieval_among_distinct(image_emb: torch.Tensor, captions: list[str], text_emb_of: dict[str, torch.Tensor],
                             n_captions: int = 100, draws: int = 10, seed: int = 0) -> dict:
    """R@1 / R@5 of images among `n_captions` distinct captions of the same set, averaged over random draws:
    each draw picks n distinct captions and one image for each."""
    rng = np.random.default_rng(seed)
    by_caption: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        by_caption.setdefault(c, []).append(i)
    distinct = sorted(by_caption)
    n = min(n_captions, len(distinct))
    r1, r5 = [], []
    for _ in range(draws):
        chosen = [distinct[j] for j in rng.choice(len(distinct), n, replace=False)]
        imgs = torch.stack([image_emb[by_caption[c][rng.integers(len(by_caption[c]))]] for c in chosen])
        texts = torch.stack([text_emb_of[c] for c in chosen])
        rec = recall_at_k(imgs @ texts.t(), torch.arange(n))
        r1.append(rec["r1"])
        r5.append(rec["r5"])
    return {"r1": round(float(np.mean(r1)), 4), "r5": round(float(np.mean(r5)), 4),
            "r1_std_over_draws": round(float(np.std(r1)), 4), "n_captions": n, "draws": draws,
            "chance_r1": round(1 / n, 4)}
