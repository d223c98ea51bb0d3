"""Guidance study: one prompt at several classifier-free guidance scales, the same seeds in every row.

For each scale it measures the CLIP score (conjure-clip, against the prompt) and the diversity (mean pairwise
conjure-features distance across seeds), the trade-off that guidance makes (Ho & Salimans, 2022). It writes a
labelled grid (rows = guidance, columns = seeds), a plot of the two numbers and a JSON of them.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

DEFAULT_GUIDANCE = [1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0]
MAX_BATCH = 16                       # a pipeline call draws at most this many images


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over all unordered pairs of rows of (N, D); N >= 2."""
    if len(features) < 2:
        raise ValueError("diversity needs at least two images (two seeds)")
    d = torch.cdist(features.double(), features.double())                  # (N, N)
    i, j = torch.triu_indices(len(features), len(features), offset=1)
    return float(d[i, j].mean())


def _generate_row(pipe, request, guidance: float, seeds: int, steps: int | None) -> list[Image.Image]:
    """`seeds` images (seeds 0 .. seeds-1) of the screened `request` at one guidance scale, at the model's base
    size."""
    images: list[Image.Image] = []
    for start in range(0, seeds, MAX_BATCH):
        req = replace(request, n=min(MAX_BATCH, seeds - start), seed=start, steps=steps, guidance=guidance,
                      size=pipe.spec.base_size)
        images += pipe(req).images
    return images


def _as_uint8(images: list[Image.Image], size: int = 64) -> torch.Tensor:
    """PIL images -> uint8 (N, 3, size, size), the resolution every evaluation network judges at."""
    from conjure.data.build import resize_images
    arr = resize_images(np.stack([np.asarray(im.convert("RGB")) for im in images]), size)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def guidance_sweep(model: str, prompt: str, guidance: list[float] = DEFAULT_GUIDANCE, seeds: int = 8,
                   steps: int | None = None, out_dir: Path = Path("studies/sweep")) -> dict:
    """Run the study and write sweep.json, grid.png and plot.png into `out_dir`; returns the numbers."""
    from conjure.config import BUILTIN_MODELS_DIR
    from conjure.evaluation.clip import clip_score, embed_images
    from conjure.evaluation.metrics import features_of, load_feature_net
    from conjure.models.clip import ClipModel
    from conjure.pipelines import load_pipeline
    from conjure.pipelines.product import Guard
    from conjure.pipelines.request import MAX_GUIDANCE, GenerationRequest
    from conjure.safety import screen_image
    # 1. check inputs
    if seeds < 2:
        raise ValueError("--seeds must be at least 2: diversity is measured between seeds")
    if not guidance:
        raise ValueError("give at least one guidance scale, e.g. --guidance 1 3 7")
    if any(not 0 <= g <= MAX_GUIDANCE for g in guidance):
        raise ValueError(f"guidance scales must be between 0 and {MAX_GUIDANCE}, got {guidance}")
    # 2. screen the prompt (safety): a refused prompt raises Refused with its verdict; the screened request
    #    carries the policy's safety negative prompt, as `conjure generate` would
    pipe = load_pipeline(model, responsible=False)
    guard = Guard(encoder=pipe.text_encoder, sign=False, audit=False)
    request, verdict = guard.screen_prompt(GenerationRequest(prompt=prompt))
    # 3. generate one row per guidance scale, the same seeds in every row
    t0 = time.time()
    rows = [_generate_row(pipe, request, g, seeds, steps) for g in guidance]
    seconds = time.time() - t0
    # 4. measure: CLIP score against the prompt, diversity across seeds
    net = load_feature_net()
    clip = ClipModel.from_pretrained(BUILTIN_MODELS_DIR / "conjure-clip")
    text = clip.embed_captions([prompt])                                      # (1, E)
    points = []
    for g, images in zip(guidance, rows):
        x = _as_uint8(images)
        scores = clip_score(embed_images(clip, x), text.expand(len(x), -1))
        points.append({"guidance": g, "clip_score": round(float(scores.mean()), 4),
                       "clip_score_std": round(float(scores.std()), 4),
                       "clip_scores": [round(float(s), 4) for s in scores],
                       "diversity": round(mean_pairwise_distance(features_of(net, x)), 4)})
    result = {"model": model, "model_hash": pipe.components.model_hash, "prompt": prompt, "seeds": seeds,
              "steps": steps or pipe.spec.default_steps, "scheduler": pipe.spec.default_scheduler,
              "prompt_verdict": verdict, "generation_seconds": round(seconds, 1),
              "clip_score": "conjure-clip, 100 * max(cos, 0)",
              "diversity": "mean pairwise Euclidean distance of conjure-features across seeds", "points": points}
    # 5. write the numbers, the grid and the plot
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=1))
    # the grid is shown to people: each tile is screened like a delivered image (withheld tiles stay grey)
    shown = [[screen_image(im, guard.policy)[1] for im in row] for row in rows]
    grid = labelled_grid(shown, [f"w={g:g}" for g in guidance], [f"seed {s}" for s in range(seeds)])
    grid.save(out_dir / "grid.png", pnginfo=_study_info(result))
    plot_tradeoff(points, prompt, out_dir / "plot.png")
    return result


def labelled_grid(rows: list[list[Image.Image | None]], row_labels: list[str], col_labels: list[str],
                  tile: int = 96) -> Image.Image:
    """Tiles in rows and columns with a label left of each row and above each column; None = a grey tile."""
    font = ImageFont.load_default(size=12)
    left, top = 56, 20
    sheet = Image.new("RGB", (left + tile * len(col_labels), top + tile * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(col_labels):
        draw.text((left + c * tile + 4, 4), label, fill="black", font=font)
    for r, (label, row) in enumerate(zip(row_labels, rows)):
        y = top + r * tile
        draw.text((4, y + tile // 2 - 6), label, fill="black", font=font)
        for c, im in enumerate(row):
            cell = Image.new("RGB", (tile - 4, tile - 4), "#bbbbbb") if im is None else \
                im.convert("RGB").resize((tile - 4, tile - 4), Image.LANCZOS)
            sheet.paste(cell, (left + c * tile + 2, y + 2))
    return sheet


def _study_info(result: dict):
    """A PNG text chunk that records what the grid shows (model, hash, prompt, seeds, steps, scales)."""
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    keep = ("model", "model_hash", "prompt", "seeds", "steps", "scheduler")
    info.add_text("conjure-study", json.dumps({**{k: result[k] for k in keep}, "study": "guidance",
                                               "guidance": [p["guidance"] for p in result["points"]]}))
    return info


def plot_tradeoff(points: list[dict], prompt: str, path: Path) -> Path:
    """Left: CLIP score and diversity against guidance; right: CLIP score against diversity, each point
    labelled with its guidance scale (the path the trade-off takes as guidance grows)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g = [p["guidance"] for p in points]
    cs = [p["clip_score"] for p in points]
    dv = [p["diversity"] for p in points]
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(g, cs, "o-", color="tab:blue")
    ax1.set_xlabel("guidance scale w")
    ax1.set_ylabel("CLIP score (conjure-clip)", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(g, dv, "s--", color="tab:orange")
    ax2.set_ylabel("diversity (mean pairwise feature distance)", color="tab:orange")
    ax3.plot(dv, cs, "o-", color="tab:green")
    for x, y, w in zip(dv, cs, g):
        ax3.annotate(f"w={w:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax3.set_xlabel("diversity (mean pairwise feature distance)")
    ax3.set_ylabel("CLIP score (conjure-clip)")
    fig.suptitle(f"Guidance study: '{prompt}'", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
