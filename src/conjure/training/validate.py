"""Held-out diffusion loss: the training objective on the validation split, with fixed noise and timesteps.

The same seeds and timesteps every time, so two checkpoints' numbers are directly comparable. It computes in
fp32 by default: exact on every machine, and on CPUs without native bf16 (AVX2 only) bf16 autocast is about six
times slower, which made finishing a model take over half an hour.
"""

from __future__ import annotations

import numpy as np
import torch

from conjure.data import load_sources
from conjure.diffusion.losses import diffusion_loss
from conjure.diffusion.schedule import q_sample
from conjure.pipelines.components import Components
from conjure.text import TextEncoder

TIMESTEPS = (50, 150, 250, 350, 450, 550, 650, 750, 850, 950)


@torch.no_grad()
def validation_loss(c: Components, sources: list[str], split: str = "validation", limit: int | None = 512,
                    batch: int = 64, seed: int = 0, precision: str = "fp32") -> dict:
    """Mean loss over `limit` items of `split` at each of TIMESTEPS (canonical caption, fixed noise).

    precision: "fp32" (default) or "bf16" (CPU autocast, as the training step computes).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
    from diffusers import DDPMScheduler
    data = load_sources(sources, split, size=c.spec.base_size)
    idx = np.random.default_rng(seed).permutation(len(data))[:limit] if limit else np.arange(len(data))
    enc = TextEncoder()
    sched = DDPMScheduler.from_config(c.scheduler_config)
    alpha_bar = sched.alphas_cumprod
    sf = c.vae.config.scaling_factor
    gen = torch.Generator().manual_seed(seed)
    per_t = {t: [] for t in TIMESTEPS}
    for s in range(0, len(idx), batch):
        ids = idx[s:s + batch]
        x = torch.from_numpy(np.ascontiguousarray(data.images[ids])).permute(0, 3, 1, 2).float() / 127.5 - 1
        x_0 = c.vae.encode(x).latent_dist.mode() * sf
        states, mask = enc.encode([data.records[i]["captions"][0] for i in ids], max_tokens=c.spec.max_tokens)
        for t_val in TIMESTEPS:
            eps = torch.randn(x_0.shape, generator=gen)
            t = torch.full((len(ids),), t_val)
            x_t = q_sample(x_0, eps, t, alpha_bar)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                pred = c.unet(x_t, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
            per_t[t_val].append(diffusion_loss(pred, x_0, eps, t, alpha_bar,
                                               sched.config.prediction_type).item() * len(ids))
    n = len(idx)
    by_t = {str(t): sum(v) / n for t, v in per_t.items()}
    return {"split": split, "n_items": int(n), "precision": precision, "timesteps": list(TIMESTEPS), "loss_by_t": by_t,
            "loss": float(np.mean(list(by_t.values())))}
