"""Experiment: does fine-tuning MiniLM's top layer on the text side lift conjure-clip's held-out retrieval?

The image side stays frozen (the committed conjure-clip's image embeddings of the training split); on the text
side MiniLM's layers 0-4 are frozen (their states cached), and layer 5 (with tune_layer) and the committed text
head train with the recipe's InfoNCE and match targets (same concept group or caption). Validation R@1 per
source (100 distinct canonical captions, as the card) after every epoch; the test split is not read.
Each argument is one variant as JSON. `--model DIR` starts from another CLIP folder than the committed one, and
`--match caption` counts only the same caption as a match (the recipe key `match`; default here: group, as the
first runs). Writes benchmarks/results/clip_text_finetune[-TAG].json and .md (`--tag TAG`).

    CONJURE_HOME=.cache/conjure python benchmarks/clip_text_finetune.py \
        '{"tune_layer": false, "epochs": 3, "lr_layer": 0, "lr_head": 0.0003}' \
        '{"tune_layer": true, "epochs": 4, "lr_layer": 0.00005, "lr_head": 0.0003}' \\
        '{"tune_layer": true, "epochs": 4, "lr_layer": 0.0002, "lr_head": 0.0003}' \\
        '{"tune_layer": true, "epochs": 6, "lr_layer": 0.0005, "lr_head": 0.0003}' \\
        '{"tune_layer": true, "epochs": 4, "lr_layer": 0.0002, "lr_head": 0.0003, "layers": 2}'
"""
import argparse
import copy
import json
import time
from pathlib import Path

import torch

from conjure.config import BUILTIN_MODELS_DIR
from conjure.models.clip import ClipModel
from conjure.evaluation.data import load_image_set
from conjure.evaluation.train import clip_captions, match_targets
from conjure.evaluation.clip import embed_images, retrieval_among_distinct
from conjure.text.minilm import MiniLM, pool
from conjure.text import get_text_encoder

parser = argparse.ArgumentParser()
parser.add_argument("variants", nargs="+", help="one JSON object per variant")
parser.add_argument("--model", default=str(BUILTIN_MODELS_DIR / "conjure-clip"))
parser.add_argument("--match", choices=["group", "caption"], default="group")
parser.add_argument("--tag", default="")
ARGS = parser.parse_args()
torch.set_num_threads(2); torch.manual_seed(0)
SOURCES = ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap", "fashion_mnist"]
clip = ClipModel.from_pretrained(Path(ARGS.model)).eval()
train = load_image_set(SOURCES, "train", per_source_limit={"fashion_mnist": 1000}, seed=0)
val = load_image_set(SOURCES, "validation")
t = time.time()
with torch.no_grad():
    img_train, img_val = embed_images(clip, train.images), embed_images(clip, val.images)
print("image embeddings", round(time.time() - t), "s", flush=True)
captions = clip_captions(SOURCES, 1)
ci = {c: i for i, c in enumerate(captions)}
enc = get_text_encoder()
ids, mask = enc.tokenizer(captions, 32, pad="max_length")
base, layer4 = MiniLM(0, 4).load_package(), MiniLM(4, 5).load_package()
t = time.time()
STATES = {2: torch.zeros(len(captions), 32, 384, dtype=torch.float16),      # inputs of layer 4 (2 layers tuned)
          1: torch.zeros(len(captions), 32, 384, dtype=torch.float16)}      # inputs of layer 5 (1 layer tuned)
with torch.no_grad():
    for s in range(0, len(captions), 512):
        h = base(ids[s:s + 512], mask[s:s + 512])
        STATES[2][s:s + 512] = h.half()
        STATES[1][s:s + 512] = layer4(h, mask[s:s + 512]).half()
print(len(captions), "captions, base states", round(time.time() - t), "s", flush=True)
cap = torch.tensor([ci[r["captions"][0]] for r in train.records])
gid = {g: i for i, g in enumerate(sorted({r["group"] for r in train.records}))}
groups = torch.tensor([gid[r["group"]] for r in train.records])

def text_emb(top, head, states, idx):
    """Captions idx -> text embeddings: the tuned top layers over the cached states, pooled, then the head."""
    v = pool(top(states[idx].float(), mask[idx]), mask[idx])
    return head.encode_text(v)

def val_r1(top, head, states):
    with torch.no_grad():
        emb = torch.cat([text_emb(top, head, states, torch.arange(s, min(s + 1024, len(captions))))
                         for s in range(0, len(captions), 1024)])
    of = {c: emb[i] for i, c in enumerate(captions)}
    out = {}
    for s in SOURCES:
        idx = [i for i, r in enumerate(val.records) if r["source"] == s]
        out[s] = round(retrieval_among_distinct(img_val[idx], [val.records[i]["captions"][0] for i in idx], of)["r1"], 3)
    icons = [out[s] for s in SOURCES if s != "fashion_mnist"]
    return out, round(sum(icons) / len(icons), 4), min(icons)

def run(tune_layer: bool, epochs: int, lr_layer: float, lr_head: float, batch: int = 256, layers: int = 1):
    states = STATES[layers]
    top = MiniLM(6 - layers, 6).load_package().requires_grad_(tune_layer)
    head = copy.deepcopy(clip).requires_grad_(False)
    for m in (head.text_proj, head.text_skip):
        m.requires_grad_(True)
    head.logit_scale.requires_grad_(True)
    params = [{"params": [*head.text_proj.parameters(), *head.text_skip.parameters(), head.logit_scale], "lr": lr_head}]
    if tune_layer:
        params.append({"params": list(top.parameters()), "lr": lr_layer})
    opt = torch.optim.AdamW(params, weight_decay=0.05)
    history = [{"epoch": "start", **dict(zip(("r1", "icon_mean", "icon_min"), val_r1(top, head, states)))}]
    print("start", history[-1], flush=True)
    steps = len(cap) // batch
    base_lrs = [g["lr"] for g in opt.param_groups]
    total = steps * epochs
    k = 0
    for e in range(epochs):
        top.train(); head.train()
        perm = torch.randperm(len(cap), generator=torch.Generator().manual_seed(e))
        t = time.time()
        for j in range(steps):
            idx = perm[j * batch:(j + 1) * batch]
            c = cap[idx]
            targets = match_targets(c, groups[idx] if ARGS.match == "group" else None)
            frac = k / total
            for g, b in zip(opt.param_groups, base_lrs):
                g["lr"] = b * min(1.0, (k + 1) / 30) * 0.5 * (1 + torch.cos(torch.tensor(frac * 3.14159)).item())
            loss = head.loss(img_train[idx], text_emb(top, head, states, c), targets)
            opt.zero_grad(); loss.backward(); opt.step(); k += 1
        top.eval(); head.eval()
        history.append({"epoch": e, "loss": round(loss.item(), 3), "seconds": round(time.time() - t),
                        **dict(zip(("r1", "icon_mean", "icon_min"), val_r1(top, head, states)))})
        print(history[-1], flush=True)
    return history

results = []
for spec in ARGS.variants:
    cfg = json.loads(spec)
    print("==", cfg, flush=True)
    results.append({"variant": cfg, "history": run(**cfg)})
out = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
stem = "clip_text_finetune" + (f"-{ARGS.tag}" if ARGS.tag else "")
(out / f"{stem}.json").write_text(json.dumps({"captions": len(captions), "threads": 2, "model": ARGS.model,
                                             "match": ARGS.match, "results": results}, indent=1) + "\n")
lines = ["# conjure-clip: fine-tuning MiniLM's top layer on the text side (image side frozen)", "",
         f"Start: `{ARGS.model}`; matches: {ARGS.match}.", "",
         "Validation R@1 among 100 distinct canonical captions per source (icon and emoji sources: mean and",
         "lowest; Fashion-MNIST among its 10). Written by `benchmarks/clip_text_finetune.py`; the test split is not",
         "read. The issue's target is R@1 >= 0.5 on the test split for every source.", "",
         "| variant | epoch | " + " | ".join(SOURCES) + " | icon mean | icon min |", "|---" * (len(SOURCES) + 4) + "|"]
for r in results:
    v = r["variant"]
    name = (f"top {v.get('layers', 1)} layer(s) at lr {v['lr_layer']} + head" if v["tune_layer"] else "head only")
    for h in r["history"]:
        lines.append(f"| {name} | {h['epoch']} | " + " | ".join(str(h["r1"][s]) for s in SOURCES)
                     + f" | {h['icon_mean']} | {h['icon_min']} |")
(out / f"{stem}.md").write_text("\n".join(lines) + "\n")
