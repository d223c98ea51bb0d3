"""Train the melody model (resumable): next-token cross-entropy on the body tokens of training-split pieces,
each piece transposed by a random interval (its key token with it) every time it is drawn, so every key is
seen for every tune. Validation perplexity is on the validation split, untransposed.

A run directory holds config.json, log.jsonl, checkpoint/ (weights.safetensors + state.pt, loaded with
weights_only=True) and, when the budget is done, model/ (weights.safetensors + config.json)."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from conjure.music import tokens as T
from conjure.music.corpus import Piece, load_corpus
from conjure.music.model import MUSIC_PRESETS, MelodyTransformer, MusicConfig

BATCH = 32
LR, LR_MIN, WARMUP = 1e-3, 1e-4, 100
LOG_EVERY, EVAL_EVERY, CKPT_EVERY = 25, 250, 100
BUCKETS = 8                     # batches drawn at once and grouped by length (less padding: about 2x faster)
TRANSPOSE = range(-5, 7)


def window(ids: list[int], length: int, rng: random.Random) -> list[int]:
    """The header plus, when the piece is longer than the context, a window that starts at a random bar line."""
    if len(ids) <= length:
        return ids
    bars = [i for i in range(T.HEADER, len(ids) - 1) if ids[i] == T.BAR]
    start = rng.choice([b for b in bars if b <= len(ids) - (length - T.HEADER)] or bars[:1])
    return ids[:T.HEADER] + ids[start:start + length - T.HEADER]


def draw(piece: Piece, rng: random.Random) -> list[int]:
    for _ in range(4):
        ids = T.encode_piece(piece, rng.choice(TRANSPOSE))
        if ids is not None:
            return ids
    return T.encode_piece(piece, 0)


def length_grouped_batches(pieces: list[Piece], length: int, rng: random.Random) -> list[list[list[int]]]:
    """BUCKETS batches from BUCKETS x BATCH random pieces: drawn (transposed, windowed), sorted by length and cut
    into batches of similar length, in random order."""
    seqs = sorted((window(draw(p, rng), length, rng) for p in rng.choices(pieces, k=BUCKETS * BATCH)), key=len)
    batches = [seqs[i:i + BATCH] for i in range(0, len(seqs), BATCH)]
    rng.shuffle(batches)
    return batches


def batch_tensor(seqs: list[list[int]]) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    return torch.tensor([s + [T.PAD] * (n - len(s)) for s in seqs])


def body_loss(model: MelodyTransformer, ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the body tokens (the header is given, not predicted); padding is ignored."""
    logits = model(ids[:, :-1])
    target = ids[:, 1:].clone()
    target[:, :T.HEADER - 1] = T.PAD
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=T.PAD,
                           reduction=reduction)


@torch.no_grad()
def perplexity(model: MelodyTransformer, pieces: list[Piece], batch: int = BATCH) -> dict:
    """Body-token perplexity over pieces (each cut to the context's first window), untransposed."""
    model.eval()
    total, count = 0.0, 0
    seqs = [T.encode_piece(p)[:model.config.length] for p in pieces]
    for i in range(0, len(seqs), batch):
        ids = batch_tensor(seqs[i:i + batch])
        total += float(body_loss(model, ids, reduction="sum"))
        count += int((ids[:, T.HEADER:] != T.PAD).sum())
    model.train()
    return {"nll": total / count, "perplexity": math.exp(total / count), "tokens": count, "pieces": len(pieces)}


def lr_at(step: int, steps: int) -> float:
    """Linear warm-up (WARMUP steps, or a tenth of a short run), then cosine decay to LR_MIN."""
    warmup = min(WARMUP, max(1, steps // 10))
    if step < warmup:
        return LR * (step + 1) / warmup
    return LR_MIN + 0.5 * (LR - LR_MIN) * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _save(ckpt: Path, model: MelodyTransformer, opt: torch.optim.Optimizer, state: dict) -> None:
    from safetensors.torch import save_file
    ckpt.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt / "weights.tmp"))
    torch.save({"opt": opt.state_dict(), "torch_rng": torch.get_rng_state(), **state}, ckpt / "state.tmp")
    (ckpt / "weights.tmp").replace(ckpt / "weights.safetensors")
    (ckpt / "state.tmp").replace(ckpt / "state.pt")


def load_model(folder: Path) -> MelodyTransformer:
    """A trained model folder (weights.safetensors + config.json) -> the model, in eval mode."""
    from safetensors.torch import load_file
    folder = Path(folder)
    if not (folder / "weights.safetensors").is_file():
        raise FileNotFoundError(f"no melody model in {folder} (weights.safetensors missing): train one with "
                                "`conjure music train`")
    config = json.loads((folder / "config.json").read_text())
    model = MelodyTransformer(MusicConfig(**config["model"]))
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    return model.eval()


def train(run_dir: Path, steps: int = 3000, preset: str = "base", seed: int = 0, max_minutes: float | None = None,
          pieces: list[Piece] | None = None, val_pieces: list[Piece] | None = None) -> Path | None:
    """Train or resume; returns run_dir/model when `steps` are done, None when stopped by max_minutes."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    train_set = pieces if pieces is not None else load_corpus("train")
    val_set = val_pieces if val_pieces is not None else load_corpus("validation")
    if not train_set:
        raise ValueError("no training pieces: build the corpus with `conjure music data`")
    cfg = MUSIC_PRESETS[preset]
    model = MelodyTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.98), weight_decay=0.05)
    ckpt = run_dir / "checkpoint"
    state = {"step": 0, "seconds": 0.0, "tokens": 0}
    if (ckpt / "state.pt").is_file():
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(ckpt / "weights.safetensors")))
        saved = torch.load(ckpt / "state.pt", weights_only=True)
        opt.load_state_dict(saved.pop("opt"))
        torch.set_rng_state(saved.pop("torch_rng"))
        state.update(saved)
    config = {"model": cfg.to_dict(), "preset": preset, "steps": steps, "batch": BATCH, "buckets": BUCKETS,
              "seed": seed,
              "lr": [LR, LR_MIN, WARMUP], "transpose": [TRANSPOSE.start, TRANSPOSE.stop - 1],
              "train_pieces": len(train_set), "validation_pieces": len(val_set), "params": model.num_params(),
              "threads": torch.get_num_threads()}
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    rng = random.Random(seed * 1_000_003 + state["step"])      # the data order resumes deterministically
    log = (run_dir / "log.jsonl").open("a")
    t0, began = time.perf_counter(), state["seconds"]
    model.train()
    bar = tqdm(total=steps, initial=state["step"], desc="training melody model", unit="step")
    pending: list[list[list[int]]] = []
    while state["step"] < steps:
        if max_minutes is not None and time.perf_counter() - t0 > max_minutes * 60:
            _save(ckpt, model, opt, state)
            return None
        step = state["step"]
        if not pending:
            pending = length_grouped_batches(train_set, cfg.length, rng)
        ids = batch_tensor(pending.pop())
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        loss = body_loss(model, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        state["tokens"] += int((ids[:, T.HEADER:] != T.PAD).sum())
        state["seconds"] = began + time.perf_counter() - t0
        bar.update(1)
        row = None
        if state["step"] % LOG_EVERY == 0:
            row = {"step": state["step"], "loss": loss.item(), "lr": lr_at(step, steps),
                   "seconds": round(state["seconds"], 1), "tokens": state["tokens"]}
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if state["step"] % EVAL_EVERY == 0 or state["step"] == steps:
            row = (row or {"step": state["step"]}) | {"val": perplexity(model, val_set)}
        if row:
            log.write(json.dumps(row) + "\n")
            log.flush()
        if state["step"] % CKPT_EVERY == 0:
            _save(ckpt, model, opt, state)
    _save(ckpt, model, opt, state)
    out = run_dir / "model"
    out.mkdir(exist_ok=True)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "weights.tmp"))
    (out / "weights.tmp").replace(out / "weights.safetensors")
    (out / "config.json").write_text(json.dumps(config | {"train_seconds": state["seconds"],
                                                          "train_tokens": state["tokens"]}, indent=1))
    return out
