"""Bias audit: prompt pairs that differ in one attribute ("cook" / "woman cook"), and the skin tone and gender
that conjure-features' heads see in the generated images, against what they see in the training images of the
same concept (emoji train split).

The pairs live in suites/bias.jsonl as emoji names ({"activity", "attribute", "value", "neutral", "variant"});
each name becomes the prompt "<name> emoji", a caption form every emoji has in training. The divergence is the
total variation distance, TV(p, q) = 1/2 sum |p - q| (0 = the same distribution, 1 = disjoint).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from conjure.evaluation.report import SUITES_DIR

HEADS = ("gender", "skin_tone")
PROMPT_TEMPLATE = "{} emoji"
EMOJI_SOURCES = ["noto", "twemoji"]
_TONE = re.compile(r" (light|medium light|medium|medium dark|dark) skin tone$")


def read_pairs(path: Path | None = None) -> list[dict]:
    path = Path(path or SUITES_DIR / "bias.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        missing = {"activity", "attribute", "value", "neutral", "variant"} - set(r)
        if missing or r["attribute"] not in HEADS:
            raise ValueError(f"{path}: each pair needs activity, attribute (one of {', '.join(HEADS)}), value, "
                             f"neutral and variant; got {r}")
    return rows


def names_of(pairs: list[dict]) -> list[str]:
    """The distinct emoji names of the pairs, neutral ones first, in file order."""
    return list(dict.fromkeys([r["neutral"] for r in pairs] + [r["variant"] for r in pairs]))


def reference_indices(records: list[dict], name: str) -> list[int]:
    """Training records of the concept `name`: every skin tone of it when the name gives none, else that tone."""
    if _TONE.search(name):
        return [i for i, r in enumerate(records) if r["name"] == name]
    return [i for i, r in enumerate(records) if _TONE.sub("", r["name"]) == name]


def distribution(classes: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Shares of each class index (N,) over `names` (all zero for an empty set)."""
    counts = torch.bincount(classes, minlength=len(names)).double()
    shares = counts / counts.sum() if len(classes) else counts
    return {n: round(float(s), 4) for n, s in zip(names, shares)}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    return round(0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q)), 4)


@torch.no_grad()
def head_classes(net, images: torch.Tensor, batch: int = 500) -> dict[str, torch.Tensor]:
    """The class each of HEADS gives each uint8 image (N, 3, H, W): {head: (N,) indices}."""
    out: dict[str, list[torch.Tensor]] = {h: [] for h in HEADS}
    for i in range(0, len(images), batch):
        logits = net.logits(net(images[i:i + batch]))
        for h in HEADS:
            out[h].append(logits[h].argmax(1))
    return {h: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for h, v in out.items()}


def _label_classes(records: list[dict], vocab: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    return {h: torch.tensor([vocab[h].index(r["labels"][h]) for r in records], dtype=torch.long) for h in HEADS}


def _compare(gen: dict, ref: dict | None, vocab: dict) -> dict:
    """Per head: the generated distribution, the reference's (heads and true labels) and the TV between the
    generated and the reference as the heads see both."""
    out = {}
    for h in HEADS:
        g = distribution(gen[h], vocab[h])
        row = {"generated": g}
        if ref is not None and len(ref["pred"][h]):
            row["train_seen"] = distribution(ref["pred"][h], vocab[h])
            row["train_labels"] = distribution(ref["labels"][h], vocab[h])
            row["tv"] = total_variation(g, row["train_seen"])
        out[h] = row
    return out


def audit(model: str, n_per_prompt: int, out_dir: Path, steps: int | None = None, seed: int = 0,
          pairs: list[dict] | None = None) -> dict:
    """Generate n_per_prompt images for every name of the pairs and compare their head distributions with the
    training images of the same concept; the summary pools every prompt that leaves an attribute open."""
    from conjure.evaluation.data import load_image_set
    from conjure.evaluation.metrics import load_feature_net
    from conjure.evaluation.report import generate
    # 1. check inputs and read the pairs
    if n_per_prompt < 1:
        raise ValueError("--n-per-prompt must be at least 1")
    pairs = pairs or read_pairs()
    names = names_of(pairs)
    torch.set_num_threads(1)
    # 2. generate: image j of a name uses seed + its position in the whole run
    t0 = time.time()
    prompts = [PROMPT_TEMPLATE.format(n) for n in names for _ in range(n_per_prompt)]
    images, model_hash = generate(model, prompts, seed, steps)
    seconds = time.time() - t0
    # 3. what the heads see: generated images, and training images of each concept
    net = load_feature_net()
    vocab = {h: net.config.heads[h] for h in HEADS}
    gen = head_classes(net, images)
    train = load_image_set(EMOJI_SOURCES, "train")
    rows_of = {n: torch.arange(k * n_per_prompt, (k + 1) * n_per_prompt) for k, n in enumerate(names)}
    # 4. compare each name with the training images of its concept
    per_name = {}
    for n in names:
        idx = reference_indices(train.records, n)
        per_name[n] = {"prompt": PROMPT_TEMPLATE.format(n), "n": n_per_prompt, "n_train": len(idx),
                       "concept": _compare({h: gen[h][rows_of[n]] for h in HEADS}, _reference(net, train, idx, vocab),
                                           vocab)}
    # 5. the headline per head: every prompt that leaves the attribute open, against its concepts' training images
    summary = {}
    for h in HEADS:
        open_names = [n for n in names if _leaves_open(n, h, pairs)]
        idx = sorted({i for n in open_names for i in reference_indices(train.records, n)})
        rows = torch.cat([rows_of[n] for n in open_names]) if open_names else torch.zeros(0, dtype=torch.long)
        tvs = [per_name[n]["concept"][h]["tv"] for n in open_names if "tv" in per_name[n]["concept"][h]]
        summary[h] = {"prompts": len(open_names), "n": len(rows), "n_train": len(idx),
                      "mean_tv_concept": round(float(np.mean(tvs)), 4) if tvs else None, "concepts_with_tv": len(tvs),
                      **_compare({k: gen[k][rows] for k in HEADS}, _reference(net, train, idx, vocab), vocab)[h]}
    result = {"model": model, "model_hash": model_hash, "n_per_prompt": n_per_prompt, "steps": steps, "seed": seed,
              "generation_seconds": round(seconds, 1),
              "divergence": "total variation, generated vs training images as the same heads see them",
              "summary": summary, "pairs": _pair_shifts(pairs, per_name), "names": per_name}
    # 6. the report folder
    _write(result, images, names, n_per_prompt, Path(out_dir))
    return result


def _pair_shifts(pairs: list[dict], per_name: dict) -> list[dict]:
    """For each pair, the share of images the attribute's head gives the pair's value, neutral then variant."""
    out = []
    for p in pairs:
        a, v = p["attribute"], p["value"]
        neutral = per_name[p["neutral"]]["concept"][a]["generated"].get(v, 0.0)
        variant = per_name[p["variant"]]["concept"][a]["generated"].get(v, 0.0)
        out.append({**p, "neutral_share": neutral, "variant_share": variant,
                    "shift": round(variant - neutral, 4)})
    return out


def _leaves_open(name: str, head: str, pairs: list[dict]) -> bool:
    """Whether a prompt leaves the head's attribute open: for gender the neutral names of gender pairs, for
    skin tone every name that names no tone."""
    if head == "gender":
        return any(p["attribute"] == "gender" and p["neutral"] == name for p in pairs)
    return not _TONE.search(name)


def _reference(net, train, idx: list[int], vocab: dict) -> dict:
    return {"pred": head_classes(net, train.images[idx]),
            "labels": _label_classes([train.records[i] for i in idx], vocab)}


def _shares(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v > 0) or "-"


def _tv(row: dict) -> str:
    return f"{row['tv']:.2f}" if "tv" in row else "n/a"


def report_markdown(r: dict) -> str:
    lines = [f"# Bias audit of {r['model']}", "",
             f"{r['n_per_prompt']} images per prompt (seed {r['seed']}, steps {r['steps'] or 'model default'}, "
             f"{r['generation_seconds']} s). conjure-features' `gender` and `skin_tone` heads read every generated "
             "image and the training images (emoji train split) of the same concept; TV is the total variation "
             "distance between the two distributions as the heads see them (0 = the same, 1 = disjoint). "
             "'training (labels)' gives the true labels, so the heads' own error on real images shows beside it.", ""]
    if r["n_per_prompt"] < 50:
        lines += [f"**Preview only:** {r['n_per_prompt']} images per prompt; a share moves by up to "
                  f"{1 / r['n_per_prompt']:.2f} with one image.", ""]
    lines += ["## Prompts that leave the attribute open, against the training images of their concepts", "",
              "Gender: the neutral prompt of each gender pair ('cook', 'person running'); skin tone: every prompt "
              "that names no tone. The last column averages the TV of each such prompt with its own concept.", "",
              "| head | prompts (images) | training images | generated | training (heads) | training (labels) | TV "
              "| mean TV per concept |", "|---|---|---|---|---|---|---|---|"]
    for h, s in r["summary"].items():
        mean = ("n/a" if s["mean_tv_concept"] is None
                else f"{s['mean_tv_concept']:.3f} ({s['concepts_with_tv']} concepts)")
        lines.append(f"| {h} | {s['prompts']} ({s['n']}) | {s['n_train']} | {_shares(s['generated'])} | "
                     f"{_shares(s.get('train_seen', {}))} | {_shares(s.get('train_labels', {}))} | {_tv(s)} | {mean} |")
    lines += ["", "Reading the skin tone row: in training, the caption '<name> emoji' belongs to the default-tone "
              "image of a concept only (tone variants name their tone), so a model that follows its captions draws "
              "the default tone for a prompt that names none; the TV against every tone of the concept measures how "
              "far that is from the concept's diversity in training, not a failure to follow the prompt.", "",
              "## Pairs: share of images the attribute's head gives the pair's value", "",
              "| activity | attribute | neutral -> variant | neutral | variant | shift |", "|---|---|---|---|---|---|"]
    for p in r["pairs"]:
        lines.append(f"| {p['activity']} | {p['attribute']} = {p['value']} | {p['neutral']} -> {p['variant']} | "
                     f"{p['neutral_share']:.2f} | {p['variant_share']:.2f} | {p['shift']:+.2f} |")
    lines += ["", "## Each prompt against the training images of its concept", "",
              "| prompt | training images | gender: generated | training | TV | skin tone: generated | training | TV |",
              "|---|---|---|---|---|---|---|---|"]
    for n, v in r["names"].items():
        g, s = v["concept"]["gender"], v["concept"]["skin_tone"]
        lines.append(f"| {v['prompt']} | {v['n_train']} | {_shares(g['generated'])} | "
                     f"{_shares(g.get('train_seen', {}))} | {_tv(g)} | {_shares(s['generated'])} | "
                     f"{_shares(s.get('train_seen', {}))} | {_tv(s)} |")
    lines += ["", "'n/a': the concept has no training images (its group fell in the validation or test split).",
              "", "![distributions](bias.png)", "", "![samples](samples.png)", ""]
    return "\n".join(lines)


def plot_distributions(r: dict, path: Path) -> Path:
    """One panel per head: for each prompt a stacked bar of the generated images' classes and one of its
    concept's training images (as the heads see them)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(r["names"])
    fig, axes = plt.subplots(1, len(HEADS), figsize=(15, 0.36 * len(names) + 2.5), sharey=True)
    for ax, h in zip(axes, HEADS):
        classes = list(next(iter(r["names"].values()))["concept"][h]["generated"])
        labels, bars = [], []
        for n in names:
            row = r["names"][n]["concept"][h]
            labels += [f"{n} (gen.)", f"{n} (train)"]
            bars += [row["generated"], row.get("train_seen", {})]
        y = np.arange(len(bars))[::-1]
        left = np.zeros(len(bars))
        cmap = plt.get_cmap("tab10")
        for c, cls in enumerate(classes):
            w = np.array([b.get(cls, 0.0) for b in bars])
            ax.barh(y, w, left=left, color=cmap(c % 10), label=cls, height=0.8)
            left += w
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.6, len(bars) - 0.4)
        ax.set_xlabel("share of images")
        ax.set_title(f"{h} head")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.6 / fig.get_figheight()), ncol=4)
    fig.suptitle(f"Bias audit of {r['model']}: {r['n_per_prompt']} images per prompt", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _write(r: dict, images: torch.Tensor, names: list[str], k: int, out_dir: Path) -> None:
    from conjure.data.show import save_contact_sheet
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bias.json").write_text(json.dumps(r, indent=1))
    first = [i * k for i in range(len(names))]
    save_contact_sheet(out_dir / "samples.png", list(images[first].permute(0, 2, 3, 1).numpy()), names)
    plot_distributions(r, out_dir / "bias.png")
    (out_dir / "bias.md").write_text(report_markdown(r))
