"""Measure the melody model: held-out perplexity, key and meter adherence, n-gram novelty.

Every measurement comes with the same measurement on real held-out pieces beside it: the key finder and meter
finder are not perfect judges (a dorian reel is "minor" in the corpus's labels, a 6/8 bar of six eighths is
ambiguous), so the real pieces' score is the ceiling to read the model's against.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path

import torch

from conjure.music import analysis as A
from conjure.music.corpus import load_corpus
from conjure.music.tokens import Condition, decode
from conjure.music.train import load_model, perplexity

# the prompt grid: each style with its usual meter (and a second meter where the corpus has many of both)
GRID = [("jig", "6/8"), ("reel", "4/4"), ("reel", "2/2"), ("hornpipe", "4/4"), ("slip jig", "9/8"),
        ("waltz", "3/4"), ("march", "2/4"), ("march", "6/8"), ("polka", "2/4"), ("strathspey", "4/4"),
        ("air", "3/4"), ("air", "4/4"), ("chorale", "4/4"), ("chorale", "3/4"), ("folk song", "2/4"),
        ("folk song", "3/4"), ("folk song", "4/4"), ("tune", "6/8")]
BARS = 16
NGRAM = 12


def prompt_grid(n: int) -> list[tuple[str, str, int, str]]:
    """n (style, meter, tonic, mode) conditions: the grid's styles in turn, keys cycling through all 24."""
    keys = [(t, m) for m in ("major", "minor") for t in range(12)]
    return [(*GRID[i % len(GRID)], *keys[(i * 7) % 24]) for i in range(n)]


def _rate(flags: list[bool]) -> dict:
    k, n = sum(flags), len(flags)
    return {"rate": k / n if n else None, "ci95": A.wilson_interval(k, n) if n else None, "n": n}


def evaluate(model_dir: Path, n: int = 240, seed: int = 0, progress: bool = True, temperature: float = 1.0,
             strict_bars: bool = False, top_p: float = 0.95, key_guidance: float = 0.0) -> dict:
    from tqdm import tqdm
    model = load_model(model_dir)
    train, test, val = load_corpus("train"), load_corpus("test"), load_corpus("validation")
    report: dict = {"model": str(model_dir), "params": model.num_params(), "n": n, "bars": BARS, "seed": seed,
                    "sampling": {"temperature": temperature, "top_p": top_p, "strict_bars": strict_bars,
                                 "key_guidance": key_guidance},
                    "corpus": {"train": len(train), "validation": len(val), "test": len(test)}}
    # 1. held-out perplexity (body tokens, untransposed, first context window of each piece)
    report["perplexity"] = {"test": perplexity(model, test), "validation": perplexity(model, val)}

    # 2. generate over the prompt grid
    items, times = [], []
    for i, (style, meter, tonic, mode) in enumerate(tqdm(prompt_grid(n), disable=not progress,
                                                        desc="composing", unit="piece")):
        gen = torch.Generator().manual_seed(seed + i)
        t = time.perf_counter()
        ids = model.generate(Condition(style, meter, tonic, mode), BARS, gen, temperature, top_p,
                             strict_bars=strict_bars, key_guidance=key_guidance)
        times.append(time.perf_counter() - t)
        items.append({"measures": decode(ids), "key": (tonic, mode), "meter": meter, "style": style})
    items = [it for it in items if any(p >= 0 for bar in it["measures"] for p, _ in bar)]

    # 3. adherence, overall and per style, with the real held-out pieces as the ceiling
    report["generated"] = A.adherence_summary(items)
    real = [{"measures": p.measures, "key": (p.tonic, p.mode), "meter": p.meter} for p in test]
    report["real_test"] = A.adherence_summary(real)
    by_style = defaultdict(list)
    for it in items:
        by_style[f"{it['style']} {it['meter']}"].append(it)
    report["by_condition"] = {k: {m: v for m, v in A.adherence_summary(v).items() if not m.endswith("ci95")}
                              for k, v in sorted(by_style.items())}

    # 4. novelty: shares a 12-interval n-gram (transposition-invariant) with the training set
    index = A.NgramIndex((p.measures for p in train), n=NGRAM)
    rng = random.Random(seed)
    from conjure.music.tokens import transpose
    transposed = [m for p in rng.sample(train, min(200, len(train)))
                  if (m := transpose(p.measures, rng.choice([-5, -3, 2, 4, 7]))) is not None]
    report["novelty"] = {
        "ngram": NGRAM, "index_ngrams": len(index),
        "generated": A.novelty_rate(index, [it["measures"] for it in items]),
        "real_test": A.novelty_rate(index, [p.measures for p in test]),
        "training_transposed": A.novelty_rate(index, transposed),
    }
    notes = [sum(p >= 0 for bar in it["measures"] for p, _ in bar) for it in items]
    report["speed"] = {"median_s_per_piece": sorted(times)[len(times) // 2],
                       "median_notes_per_piece": sorted(notes)[len(notes) // 2], "threads": torch.get_num_threads()}
    report["summary"] = {
        "music_key_adherence": report["generated"]["key_adherence"],
        "music_key_adherence_ci95": report["generated"]["key_adherence_ci95"],
        "music_meter_adherence": report["generated"]["meter_adherence"],
        "music_meter_adherence_ci95": report["generated"]["meter_adherence_ci95"],
        "music_novelty": report["novelty"]["generated"],
        "real_test_key_adherence": report["real_test"]["key_adherence"],
        "real_test_meter_adherence": report["real_test"]["meter_adherence"],
        "real_test_novelty": report["novelty"]["real_test"],
        "training_transposed_novelty": report["novelty"]["training_transposed"],
        "test_perplexity": report["perplexity"]["test"]["perplexity"],
        "pieces": len(items),
    }
    return report
