"""What a generator should beat and what it should not do: the retrieval baseline (the training image whose
caption is nearest each prompt) and the memorisation rate (generated images nearer to one training image than
to any real held-out image).

Both work on precomputed vectors, so they are cheap to test on constructed cases; `report.evaluate` feeds them
MiniLM pooled caption vectors and conjure-features image features.
"""

from __future__ import annotations

import torch


def nearest_captions(prompt_vectors: torch.Tensor, caption_vectors: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Index of the nearest caption (cosine) for each prompt: (P, E), (M, E) -> (P,). Ties go to the lowest index."""
    p = torch.nn.functional.normalize(prompt_vectors.float(), dim=-1)
    c = torch.nn.functional.normalize(caption_vectors.float(), dim=-1)
    return torch.cat([(p[i:i + batch] @ c.t()).argmax(1) for i in range(0, len(p), batch)])   # (P,)


def _nearest_distance(query: torch.Tensor, ref: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Euclidean distance from each query row to its nearest reference row: (N, D), (M, D) -> (N,)."""
    return torch.cat([torch.cdist(query[i:i + batch].double(), ref.double()).min(1).values
                      for i in range(0, len(query), batch)])


def memorisation_rate(generated: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> dict:
    """Share of generated feature vectors (N, D) whose nearest training vector is strictly nearer than their
    nearest real test vector; a copy of a training image scores 1, an unseen image about the rate its
    reference sets' sizes imply (measure real held-out images the same way to know it).

    Also returns the median ratio d(train) / d(test) (under 1 = closer to training data) and the share of
    near-copies, images whose training neighbour is under a tenth of the test neighbour's distance.
    """
    if min(len(generated), len(train), len(test)) == 0:
        raise ValueError("memorisation_rate needs non-empty generated, training and test feature sets")
    d_train, d_test = _nearest_distance(generated, train), _nearest_distance(generated, test)
    ratio = d_train / d_test.clamp(min=1e-12)
    return {"rate": round(float((d_train < d_test).double().mean()), 4),
            "near_copy_rate": round(float((ratio < 0.1).double().mean()), 4),
            "median_ratio": round(float(ratio.median()), 4),
            "n": len(generated), "n_train": len(train), "n_test": len(test)}
