"""Sampling speed of the six lab families, side by side in one run: each round samples one batch from every
family in turn (interleaved, so that machine noise hits them alike), after one warm-up batch each; the
figure per family is the median over rounds of milliseconds per image, with its ratio to the fastest.

Writes benchmarks/results/lab_sampling.json and .md; `conjure lab compare` reads the JSON.

    python benchmarks/lab_sampling.py [--runs runs/lab] [--batch 100] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FAMILIES = ["gan", "vae", "ddpm", "ldm", "flow", "ar"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "lab")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from conjure.lab.data import text_for
    from conjure.lab.train import load_trained

    models = {f: load_trained(args.runs / f"{f}-seed0" / "model")[0] for f in FAMILIES
              if (args.runs / f"{f}-seed0" / "model" / "config.json").is_file()}
    if not models:
        raise SystemExit(f"no finished lab runs under {args.runs}; train them with: conjure lab train FAMILY")
    text = text_for(torch.arange(args.batch) % 10, prompt_only=True)
    times: dict[str, list[float]] = {f: [] for f in models}
    nfe: dict[str, int] = {}
    for r in range(args.rounds + 1):                      # round 0 is the warm-up
        for f, fam in models.items():
            t0 = time.perf_counter()
            _, nfe[f] = fam.sample(text, torch.Generator().manual_seed(r))
            if r:
                times[f].append(1000 * (time.perf_counter() - t0) / args.batch)
    med = {f: statistics.median(v) for f, v in times.items()}
    fastest = min(med.values())
    out = {"families": {f: {"sample_ms_median": round(med[f], 3), "sample_ms_runs": [round(x, 3) for x in times[f]],
                            "nfe": nfe[f], "ratio_to_fastest": round(med[f] / fastest, 1)} for f in models},
           "batch": args.batch, "rounds": args.rounds, "threads": args.threads, "device": "cpu",
           "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
           "note": "medians of interleaved rounds on a shared machine; compare ratios, not absolute times"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lab_sampling.json").write_text(json.dumps(out, indent=1))
    lines = ["# Lab sampling speed", "", f"Batch {args.batch}, {args.rounds} interleaved rounds after a warm-up, "
             f"{args.threads} torch threads, CPU. Command: `python benchmarks/lab_sampling.py`.", "",
             "| family | network evaluations / image | ms / image (median) | x fastest |", "|---|---|---|---|"]
    lines += [f"| {f} | {v['nfe']} | {v['sample_ms_median']:.3g} | {v['ratio_to_fastest']} |"
              for f, v in out["families"].items()]
    (RESULTS / "lab_sampling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
