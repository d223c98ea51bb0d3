"""Evaluation-metric benchmark: the real-vs-real floor (validation against test split at equal n) with
conjure's features, the same numbers for degraded copies (blur, noise, shift), and how long the metrics take
on this CPU (generation excluded; the issue 3 budget is 5 minutes for 2,000 images).

Writes benchmarks/results/evaluation_metrics.json and evaluation_metrics.md.

    python benchmarks/evaluation_metrics.py [--n 2000] [--sources noto twemoji ... fashion_mnist]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ALL = ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap", "fashion_mnist"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sources", nargs="+", default=ALL)
    ap.add_argument("--bootstrap", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from conjure.evaluation.metrics import (class_accuracy, image_set_metrics, load_feature_net,
                                            reference_sets)
    from conjure.evaluation.data import label_tensor
    net = load_feature_net()
    test, val, test_rec, val_rec = reference_sets(args.sources, args.n)
    results = {"n_test": len(test), "n_validation": len(val), "sources": args.sources,
               "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads (shared CPU)"}
    t0 = time.time()
    results["floor"] = image_set_metrics(net, test, val, bootstrap=args.bootstrap)
    results["seconds_all_metrics"] = round(time.time() - t0, 1)
    results["class_accuracy_validation"] = class_accuracy(net, val, label_tensor(val_rec, net.config.heads))
    from conjure.evaluation.degrade import DEGRADATIONS
    for name, fn in DEGRADATIONS.items():
        results[name] = image_set_metrics(net, test, fn(val), bootstrap=args.bootstrap)
        results[f"class_accuracy_{name}"] = class_accuracy(net, fn(val), label_tensor(val_rec, net.config.heads))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "evaluation_metrics.json").write_text(json.dumps(results, indent=1))
    keys = ["fid_conjure", "kid_conjure", "is_conjure", "precision_conjure", "recall_conjure"]
    lines = ["# Evaluation metrics: real-vs-real floor and degraded copies", "",
             f"Test split ({len(test)} images) against validation split ({len(val)}), sources "
             f"{', '.join(args.sources)}; conjure-features, seed 0, {args.bootstrap} bootstrap rounds. "
             f"All metrics for one pair took {results['seconds_all_metrics']} s on {results['machine']}.", "",
             "| validation set | " + " | ".join(keys) + " | fid 95% CI |", "|---" * (len(keys) + 2) + "|"]
    for name in ("floor", "blur", "noise", "shift"):
        r = results[name]
        lines.append(f"| {name if name != 'floor' else 'as is (floor)'} | " +
                     " | ".join(f"{r[k]:.4g}" for k in keys) + f" | {r['ci95']['fid_conjure']} |")
    (RESULTS / "evaluation_metrics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
