"""The labelled prompt dataset: templates x slot fillers (data/prompts.yaml), split by template group.

Every template is one group and a group lands wholly in train or held-out; a category marked
`train_only` keeps all its groups in train, so adding it leaves the evaluated set unchanged. Held-out prompts
within MiniLM cosine `MAX_HELDOUT_COSINE` of any training prompt are dropped, so that held-out
numbers measure generalisation rather than near-copies. The built dataset is written to
data/dataset.jsonl (prompt, label, group, kind, split) and read back from there.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from conjure.safety.policy import CATEGORIES

DATA_DIR = Path(__file__).with_name("data")
TEMPLATES_PATH = DATA_DIR / "prompts.yaml"
ADVERSARIAL_PATH = DATA_DIR / "adversarial.yaml"
FRESH_BENIGN_PATH = DATA_DIR / "fresh_benign.yaml"          # set 1: read once, then used to choose evidence_cosine
FRESH_BENIGN_2_PATH = DATA_DIR / "fresh_benign_2.yaml"      # set 2: measurement only
FRESH_PROHIBITED_PATH = DATA_DIR / "fresh_prohibited.yaml"  # measurement only (set 1)
FRESH_BENIGN_3_PATH = DATA_DIR / "fresh_benign_3.yaml"      # set 3: written after the free-written training data,
FRESH_PROHIBITED_2_PATH = DATA_DIR / "fresh_prohibited_2.yaml"  # measured once on the final model (2026.3);
                                                            # sets 1-3 and prohibited 1-2 are development sets now
FRESH_BENIGN_4_PATH = DATA_DIR / "fresh_benign_4.yaml"      # set 4 and prohibited set 3: written after the
FRESH_PROHIBITED_3_PATH = DATA_DIR / "fresh_prohibited_3.yaml"  # set-F training data, measured once (2026.4)
FRESH_BENIGN_5_PATH = DATA_DIR / "fresh_benign_5.yaml"      # set 5 and prohibited set 4: written before the
FRESH_PROHIBITED_4_PATH = DATA_DIR / "fresh_prohibited_4.yaml"  # fine-tuned classifier was chosen (on sets 1-4,
                                                            # prohibited 1-3), measured once on it (2026.5)
FRESH_BENIGN_6_PATH = DATA_DIR / "fresh_benign_6.yaml"      # set 6 and prohibited set 5: written after set G's
FRESH_PROHIBITED_5_PATH = DATA_DIR / "fresh_prohibited_5.yaml"  # training data by a writer who read no other
                                                            # prompt file; measured once on 2026.6
FRESH_BENIGN_7_PATH = DATA_DIR / "fresh_benign_7.yaml"      # set 7 and prohibited set 6: written with set H
FRESH_PROHIBITED_6_PATH = DATA_DIR / "fresh_prohibited_6.yaml"  # (multilingual) by a writer who read no other
                                                            # prompt file; measured once on 2026.7
FRESH_BENIGN_8_PATH = DATA_DIR / "fresh_benign_8.yaml"      # set 8 and prohibited set 7: written before the
FRESH_PROHIBITED_7_PATH = DATA_DIR / "fresh_prohibited_7.yaml"  # 2026.8 word lists and set I, by a writer who
                                                            # read no other prompt file; measured once on 2026.8
FRESH_BENIGN_9_PATH = DATA_DIR / "fresh_benign_9.yaml"      # set 9 and prohibited set 8: written after 2026.8
FRESH_PROHIBITED_8_PATH = DATA_DIR / "fresh_prohibited_8.yaml"  # by a writer who read no prompt file or word
                                                            # list, before 2026.9 was tuned; measured once on it
FRESH_BENIGN_10_PATH = DATA_DIR / "fresh_benign_10.yaml"    # set 10 and prohibited set 9: written after 2026.9
FRESH_PROHIBITED_9_PATH = DATA_DIR / "fresh_prohibited_9.yaml"  # by a writer who read no prompt file or word
                                                            # list; measured once on 2026.10
FRESH_BENIGN_11_PATH = DATA_DIR / "fresh_benign_11.yaml"    # set 11 and prohibited set 10: written after
FRESH_PROHIBITED_10_PATH = DATA_DIR / "fresh_prohibited_10.yaml"  # 2026.10 by a writer who read no prompt file
                                                            # or word list, before 2026.11 was tuned
ENGLISH_FIRST = {FRESH_BENIGN_7_PATH.name: 15, FRESH_PROHIBITED_6_PATH.name: 18,   # per theme: English first,
                 FRESH_BENIGN_8_PATH.name: 10, FRESH_PROHIBITED_7_PATH.name: 12,
                 FRESH_BENIGN_9_PATH.name: 15, FRESH_PROHIBITED_8_PATH.name: 18,
                 FRESH_BENIGN_10_PATH.name: 15, FRESH_PROHIBITED_9_PATH.name: 18,
                 FRESH_BENIGN_11_PATH.name: 15, FRESH_PROHIBITED_10_PATH.name: 18}
                                                            # then Spanish/French/German/Italian/Portuguese
FREE_BENIGN_GLOB = "train_benign_free_*.yaml"       # free-written, train only: never measured on
FREE_PROHIBITED_GLOB = "train_prohibited_free*.yaml"
DATASET_PATH = DATA_DIR / "dataset.jsonl"
LABELS = ("benign", *CATEGORIES)            # classifier output order
HELDOUT_FRACTION = 0.25                     # of each category's template groups
MAX_HELDOUT_COSINE = 0.9
PER_CATEGORY = {"benign": 700, "benign_hard": 1100, "benign_people": 1000}   # prompts to generate
DEFAULT_PER_CATEGORY = 640
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass
class Example:
    prompt: str
    label: str          # one of LABELS
    group: str          # template group id, e.g. "violence/3"
    kind: str           # prohibited | hard_benign | benign | builtin
    split: str = ""     # train | heldout | dropped (held-out but too close to a training prompt)


def _fill(template: str, slots: dict[str, list[str]], rng: random.Random) -> str:
    return _SLOT.sub(lambda m: rng.choice(slots[m.group(1)]), template)


def generate(templates_path: Path = TEMPLATES_PATH, seed: int = 0) -> list[Example]:
    """Every category's prompts: for each template, up to an equal share of distinct fillings."""
    spec = yaml.safe_load(templates_path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    out: list[Example] = []
    for cat, d in spec["categories"].items():
        label = d.get("label", cat)
        if label not in LABELS:
            raise ValueError(f"{templates_path}: category {cat} has unknown label {label!r}")
        kind = "prohibited" if label != "benign" else ("benign" if cat == "benign" else "hard_benign")
        templates = d["templates"]
        share = int(d.get("count", PER_CATEGORY.get(cat, DEFAULT_PER_CATEGORY))) // len(templates)
        for i, template in enumerate(templates):
            missing = set(_SLOT.findall(template)) - set(d["slots"])
            if missing:
                raise ValueError(f"{templates_path}: template {template!r} uses unknown slots {missing}")
            seen: set[str] = set()
            for _ in range(share * 20):
                if len(seen) >= share:
                    break
                seen.add(re.sub(r"\s+", " ", _fill(template, d["slots"], rng)).strip())
            out += [Example(p, label, f"{cat}/{i}", kind) for p in sorted(seen)]
    return out


def train_only_categories(templates_path: Path = TEMPLATES_PATH) -> frozenset[str]:
    """The template categories marked `train_only: true` (never held out, never evaluated)."""
    spec = yaml.safe_load(templates_path.read_text(encoding="utf-8"))
    return frozenset(cat for cat, d in spec["categories"].items() if d.get("train_only", False))


def assign_groups(examples: list[Example], train_only: frozenset[str] | None = None) -> None:
    """Mark whole template groups as train or heldout (about HELDOUT_FRACTION of each category
    that is not in `train_only`; None reads the train-only categories from the templates file)."""
    train_only = train_only_categories() if train_only is None else train_only
    by_cat: dict[str, list[str]] = {}
    for ex in examples:
        cat = ex.group.split("/")[0]
        if ex.group not in by_cat.setdefault(cat, []):
            by_cat[cat].append(ex.group)
    heldout: set[str] = set()
    for cat, groups in by_cat.items():
        if cat == "builtin" or cat in train_only:
            continue
        ranked = sorted(groups, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
        k = max(2, round(HELDOUT_FRACTION * len(groups))) if len(groups) > 3 else 0
        heldout.update(ranked[:k])
    for ex in examples:
        ex.split = "heldout" if ex.group in heldout else "train"


def drop_near_duplicates(examples: list[Example], vectors: np.ndarray,
                         max_cosine: float = MAX_HELDOUT_COSINE) -> np.ndarray:
    """Mark held-out prompts within `max_cosine` of a training prompt as dropped; returns the max cosines."""
    train = np.array([ex.split == "train" for ex in examples])
    held = np.flatnonzero([ex.split == "heldout" for ex in examples])
    nearest = max_train_cosine(vectors[held], vectors[train])
    for i, c in zip(held, nearest):
        if c >= max_cosine:
            examples[i].split = "dropped"
    return nearest


def max_train_cosine(queries: np.ndarray, train: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each unit vector in queries (N, D), its largest cosine to the unit vectors in train (M, D)."""
    best = np.full(len(queries), -1.0, dtype=np.float32)
    for s in range(0, len(train), chunk):
        sims = queries @ train[s:s + chunk].T           # (N, chunk)
        best = np.maximum(best, sims.max(axis=1)) if sims.size else best
    return best


def save_dataset(examples: list[Example], path: Path = DATASET_PATH) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")
    return path


def load_dataset(path: Path = DATASET_PATH, split: str | None = None) -> list[Example]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; build it with: python -m conjure.safety.train")
    rows = [Example(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if split is None or r.split == split]


def load_adversarial(path: Path = ADVERSARIAL_PATH) -> list[Example]:
    """The hand-written adversarial set (all prohibited; never trained on)."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Example(p, cat, f"adversarial/{cat}", "prohibited", "adversarial")
            for cat, prompts in spec["prompts"].items() for p in prompts]


def load_fresh_benign(path: Path = FRESH_BENIGN_PATH) -> list[Example]:
    """Hard benign prompts written after the classifier was frozen, by writers who did not read the templates
    (groups are themes, not templates). Set 1 was measured once and then used to choose the policy's
    evidence_cosine, so it is a development set now; set 2 (FRESH_BENIGN_2_PATH) only measures."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Example(p, "benign", f"fresh/{theme}", "hard_benign", "fresh")
            for theme, prompts in spec["prompts"].items() for p in prompts]


def english_mask(path: Path) -> list[bool]:
    """For a fresh set written in several languages (ENGLISH_FIRST), which prompts are English, in load order:
    the writer put the English prompts of each theme first. Sets written in English only give all True."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    first = ENGLISH_FIRST.get(path.name)
    return [first is None or i < first for prompts in spec["prompts"].values() for i in range(len(prompts))]


def load_fresh_prohibited(path: Path = FRESH_PROHIBITED_PATH) -> list[Example]:
    """Prohibited prompts written by a writer who read no other prompt file: recall on prompts unlike the
    templates. Measurement only."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(spec["prompts"]) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"{path}: unknown categories {sorted(unknown)}")
    return [Example(p, cat, f"fresh/{cat}", "prohibited", "fresh")
            for cat, prompts in spec["prompts"].items() for p in prompts]


def load_free_written(data_dir: Path = DATA_DIR) -> list[Example]:
    """Train-only prompts written freely (not from templates) by writers who never saw the measurement sets:
    hard-benign themes (label benign) and prohibited categories. Group `free/THEME`; split train."""
    out: list[Example] = []
    for path in sorted(data_dir.glob(FREE_BENIGN_GLOB)):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        out += [Example(p, "benign", f"free/{theme}", "hard_benign", "train")
                for theme, prompts in spec["prompts"].items() for p in prompts]
    for path in sorted(data_dir.glob(FREE_PROHIBITED_GLOB)):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        unknown = set(spec["prompts"]) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"{path}: unknown categories {sorted(unknown)}")
        out += [Example(p, cat, f"free/{cat}", "prohibited", "train")
                for cat, prompts in spec["prompts"].items() for p in prompts]
    seen: set[str] = set()
    return [ex for ex in out if not (ex.prompt.lower() in seen or seen.add(ex.prompt.lower()))]


def measurement_sets() -> dict[str, list[Example]]:
    """Every set that only measures (never trains): the adversarial set and the fresh sets."""
    return {"adversarial": load_adversarial(), "fresh_benign_1": load_fresh_benign(),
            "fresh_benign_2": load_fresh_benign(FRESH_BENIGN_2_PATH), "fresh_prohibited": load_fresh_prohibited(),
            "fresh_benign_3": load_fresh_benign(FRESH_BENIGN_3_PATH),
            "fresh_prohibited_2": load_fresh_prohibited(FRESH_PROHIBITED_2_PATH),
            "fresh_benign_4": load_fresh_benign(FRESH_BENIGN_4_PATH),
            "fresh_prohibited_3": load_fresh_prohibited(FRESH_PROHIBITED_3_PATH),
            "fresh_benign_5": load_fresh_benign(FRESH_BENIGN_5_PATH),
            "fresh_prohibited_4": load_fresh_prohibited(FRESH_PROHIBITED_4_PATH),
            "fresh_benign_6": load_fresh_benign(FRESH_BENIGN_6_PATH),
            "fresh_prohibited_5": load_fresh_prohibited(FRESH_PROHIBITED_5_PATH),
            "fresh_benign_7": load_fresh_benign(FRESH_BENIGN_7_PATH),
            "fresh_prohibited_6": load_fresh_prohibited(FRESH_PROHIBITED_6_PATH),
            "fresh_benign_8": load_fresh_benign(FRESH_BENIGN_8_PATH),
            "fresh_prohibited_7": load_fresh_prohibited(FRESH_PROHIBITED_7_PATH),
            "fresh_benign_9": load_fresh_benign(FRESH_BENIGN_9_PATH),
            "fresh_prohibited_8": load_fresh_prohibited(FRESH_PROHIBITED_8_PATH),
            "fresh_benign_10": load_fresh_benign(FRESH_BENIGN_10_PATH),
            "fresh_prohibited_9": load_fresh_prohibited(FRESH_PROHIBITED_9_PATH),
            "fresh_benign_11": load_fresh_benign(FRESH_BENIGN_11_PATH),
            "fresh_prohibited_10": load_fresh_prohibited(FRESH_PROHIBITED_10_PATH)}


def decontaminate(examples: list[Example], vectors: np.ndarray, measured: np.ndarray,
                  max_cosine: float = MAX_HELDOUT_COSINE) -> int:
    """Mark free-written training prompts within `max_cosine` of any measurement prompt as dropped, so that
    the measurement sets stay unlike anything trained on; returns how many were dropped."""
    free = np.flatnonzero([ex.group.startswith("free/") and ex.split == "train" for ex in examples])
    if not len(free) or not len(measured):
        return 0
    nearest = max_train_cosine(vectors[free], measured)
    for i, c in zip(free, nearest):
        if c >= max_cosine:
            examples[i].split = "dropped"
    return int((nearest >= max_cosine).sum())


def builtin_captions(data_dir: Path, split: str | None = None) -> list[str]:
    """Every distinct caption of the built-in datasets in a dataset cache (optionally one split)."""
    caps: set[str] = set()
    for items in sorted(data_dir.glob("*/items.jsonl")):
        for line in items.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if split is None or rec.get("split") == split:
                caps.update(rec["captions"])
    return sorted(caps)
