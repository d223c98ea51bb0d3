"""Fine-tune MiniLM's top layers with the safety classifier's head (recipe `finetune_layers` > 0).

The frozen base layers run once per prompt: their output states are kept in a store under CONJURE_HOME
(safety/states-L{first}.npz, keyed by the prompt's normal form, fp16), so training runs only the top layers
and the head, and a retraining computes states for new prompts only.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from conjure.config import get_settings
from conjure.safety.classifier import ClassifierConfig, PromptClassifier
from conjure.safety.minilm import DIM, MAX_TOKENS, N_LAYERS, TunedClassifier
from conjure.text.minilm import packaged_stack


def base_states(forms: list[str], first: int, encoder=None, batch_size: int = 64) -> list[np.ndarray]:
    """Per normal form: MiniLM's states (T, D) fp16 after its first `first` layers (the fine-tuned layers'
    input), T = the form's token count."""
    path = get_settings().home / "safety" / f"states-L{first}.npz"
    store: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            ends = np.cumsum(z["lengths"])
            flat = z["states"]
            store = {k: flat[e - n:e] for k, n, e in zip(z["keys"].tolist(), z["lengths"], ends)}
    missing = sorted(set(forms) - set(store), key=len)
    if missing:
        if encoder is None:
            from conjure.text import get_text_encoder
            encoder = get_text_encoder()
        base = packaged_stack(0, first)
        t0 = time.time()
        with torch.inference_mode():
            for s in range(0, len(missing), batch_size):
                chunk = missing[s:s + batch_size]
                ids, mask = encoder.tokenizer(chunk, MAX_TOKENS, pad="longest")
                x = base(ids, mask).half().numpy()                                     # (B, T, D)
                for i, form in enumerate(chunk):
                    store[form] = x[i, :int(mask[i].sum())]
                if s // batch_size % 50 == 0:
                    print(f"base states: {s + len(chunk)}/{len(missing)} ({time.time() - t0:.0f} s)", flush=True)
        keys = sorted(store)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), lengths=np.array([len(store[k]) for k in keys], dtype=np.int64),
                 states=np.concatenate([store[k] for k in keys]))
        tmp.replace(path)                                 # a crash mid-write leaves the old store intact
    return [store[f] for f in forms]


def _batches(lengths: np.ndarray, batch: int, gen: torch.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (little padding): shuffle, sort within windows of 50 batches."""
    perm = torch.randperm(len(lengths), generator=gen).numpy()
    window = 50 * batch
    out = []
    for s in range(0, len(perm), window):
        w = perm[s:s + window]
        w = w[np.argsort(lengths[w], kind="stable")]
        out += [w[i:i + batch] for i in range(0, len(w), batch)]
    order = torch.randperm(len(out), generator=gen).tolist()
    return [out[i] for i in order]


def _pad(states: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length (T_i, D) states -> (B, T, D) fp32 zero-padded and the (B, T) mask."""
    t = max(len(s) for s in states)
    x = torch.zeros((len(states), t, DIM))
    mask = torch.zeros((len(states), t), dtype=torch.long)
    for i, s in enumerate(states):
        x[i, :len(s)] = torch.from_numpy(s.astype(np.float32))
        mask[i, :len(s)] = 1
    return x, mask


def fit_tuned(forms: list[str], y: np.ndarray, head: PromptClassifier, recipe, weight: torch.Tensor
              ) -> TunedClassifier:
    """Fine-tune the top `recipe.finetune_layers` layers with the fitted `head`: class-weighted cross-entropy,
    AdamW, linear warm-up then cosine decay, dropout in the head only (MiniLM's own dropout stays off)."""
    torch.manual_seed(recipe.seed)
    config = ClassifierConfig(**{**head.config.__dict__, "finetune_layers": recipe.finetune_layers})
    model = TunedClassifier(config).init_from_package()
    model.head.load_state_dict(head.state_dict())
    states = base_states(forms, N_LAYERS - recipe.finetune_layers)
    lengths = np.array([len(s) for s in states])
    gen = torch.Generator().manual_seed(recipe.seed)
    steps = recipe.finetune_epochs * len(_batches(lengths, recipe.finetune_batch, torch.Generator()))
    opt = torch.optim.AdamW([{"params": model.top.parameters(), "lr": recipe.finetune_lr},
                             {"params": model.head.parameters(), "lr": 3 * recipe.finetune_lr}],
                            weight_decay=recipe.weight_decay)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, i / steps))))
    yt = torch.from_numpy(y)
    t0, step = time.time(), 0
    model.train()
    for epoch in range(recipe.finetune_epochs):
        total = 0.0
        for idx in _batches(lengths, recipe.finetune_batch, gen):
            x, mask = _pad([states[i] for i in idx])
            logits, _ = model(x, mask)
            loss = torch.nn.functional.cross_entropy(logits, yt[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            step += 1
            if step % 200 == 0:
                print(f"finetune step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
        print(f"finetune epoch {epoch} loss {total / len(forms):.4f} ({time.time() - t0:.0f} s)", flush=True)
    return model.eval().requires_grad_(False)
