"""Train the small VAE that conjure-tiny's diffusion model works in (L1 reconstruction + weak KL).

Resumable: the run directory holds `state.pt` (optimizer, step, RNG; loaded with weights_only=True)
and the weights as a diffusers folder (`vae/`), written every `save_every` steps.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from conjure.data import load_sources
from conjure.models.vae import TinyVAE


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(run_dir: Path, sources: list[str], channels=(16, 64, 128), steps: int = 2000, batch: int = 32,
              lr: float = 1e-3, kl_weight: float = 1e-6, save_every: int = 200, seed: int = 0,
              max_minutes: float | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = load_sources(sources, "train")
    val = load_sources(sources, "validation")
    vae = TinyVAE(channels=tuple(channels))
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    step = 0
    rng = np.random.default_rng(seed)
    if (run_dir / "state.pt").is_file():   # resume
        state = torch.load(run_dir / "state.pt", weights_only=True)
        vae = TinyVAE.from_pretrained(run_dir / "vae")
        opt = torch.optim.AdamW(vae.parameters(), lr=lr)
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        rng = np.random.default_rng(seed + step)
    t0 = time.time()
    bar = tqdm(total=steps, initial=step, desc="vae", unit="step")
    while step < steps:
        # --- one step: cosine-decayed LR, bf16 autocast, L1 + KL
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        x = to_tensor(data.images[rng.integers(0, len(data), batch)])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            recon, dist = vae(x)
        loss = (recon.float() - x).abs().mean() + kl_weight * dist.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{batch * bar.n / max(time.time() - t0, 1e-6):.0f}")
        out_of_time = max_minutes is not None and time.time() - t0 > max_minutes * 60
        if step % save_every == 0 or step == steps or out_of_time:
            _save(vae, opt, step, run_dir)
        if out_of_time:
            break
    # --- set the latent scaling factor from the training latents, measure validation L1
    vae.eval()
    with torch.no_grad():
        z = torch.cat([vae.encode(to_tensor(data.images[i:i + 256])).latent_dist.mode()
                       for i in range(0, min(len(data), 4096), 256)])
        vae.register_to_config(scaling_factor=float(1.0 / z.std()))
        l1 = np.mean([(vae.decode(vae.encode(to_tensor(val.images[i:i + 256])).latent_dist.mode()).sample
                       - to_tensor(val.images[i:i + 256])).abs().mean().item() for i in range(0, len(val), 256)])
    _save(vae, opt, step, run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(
        {"step": step, "images_seen": step * batch, "val_l1": float(l1), "scaling_factor": vae.config.scaling_factor,
         "latent_std": float(z.std()), "wall_s": time.time() - t0}, indent=1))
    return run_dir / "vae"


def _save(vae: TinyVAE, opt, step: int, run_dir: Path) -> None:
    vae.save_pretrained(run_dir / "vae")
    tmp = run_dir / "state.pt.tmp"
    torch.save({"opt": opt.state_dict(), "step": step}, tmp)
    tmp.replace(run_dir / "state.pt")


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("run_dir", type=Path)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--max-minutes", type=float, default=None)
    a = p.parse_args()
    train_vae(a.run_dir, ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap"], steps=a.steps,
              max_minutes=a.max_minutes)
