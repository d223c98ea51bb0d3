"""Evaluation-metric benchmark: the real-vs-real floor (validation against test split at equal n) with
conjure's features, the same numbers for degraded copies (blur, noise, shift), and how long the metrics take
on this CPU (generation excluded; the issue 3 budget is 5 minutes for 2,000 images): the five image-set metrics
for one pair, and `conjure evaluate`'s whole metric section (both metric sets, class accuracy, CLIP R@1 of
generated and real images, the retrieval baseline and the memorisation rate) on the held-out suite, with
validation-split images standing in for generated ones (`evaluate(..., images=)`; the time does not depend on
what the images show), median of --evaluate-runs runs.

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
    ap.add_argument("--evaluate-runs", type=int, default=3, help="runs of evaluate()'s metric section (0: skip)")
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
    if args.evaluate_runs:
        results["evaluate_metric_section"] = evaluate_metric_seconds(args.n, args.evaluate_runs)
        torch.set_num_threads(args.threads)
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
    if "evaluate_metric_section" in results:
        e = results["evaluate_metric_section"]
        lines += ["", f"`conjure evaluate`'s whole metric section on the held-out suite, {e['n']} stand-in images "
                  f"(validation-split images in place of generated ones; generation excluded), "
                  f"{e['torch_threads']} torch thread as evaluate sets it: median **{e['median_s']} s** over "
                  f"{len(e['runs_s'])} runs ({', '.join(str(x) for x in e['runs_s'])} s; the first run also fills "
                  f"the caches of training-caption text vectors and of the training images' features (once per "
                  f"judge) when they are empty). Budget: 300 s for 2,000 images."]
    (RESULTS / "evaluation_metrics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def evaluate_metric_seconds(n: int, runs: int) -> dict:
    """`evaluate`'s metric_seconds on the held-out suite with validation images of each row's source standing in
    for generated ones: every run, the median."""
    import tempfile

    import numpy as np

    from conjure.evaluation.data import load_image_set
    from conjure.evaluation.metrics import reference_pair
    from conjure.evaluation.report import evaluate, read_suite, suite_rows
    suite = read_suite("heldout")
    sources = sorted({r["source"] for r in suite})
    rows = suite_rows(suite, reference_pair(sources, n, 0).counts, 0)
    val = load_image_set(sources, "validation")
    by_source: dict[str, list[int]] = {}
    for i, r in enumerate(val.records):
        by_source.setdefault(r["source"], []).append(i)
    seen: dict[str, int] = {}
    pick = []
    for r in rows:
        mine = by_source[r["source"]]
        pick.append(mine[seen.get(r["source"], 0) % len(mine)])
        seen[r["source"]] = seen.get(r["source"], 0) + 1
    images = val.images[pick]
    secs = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as out:
            secs.append(evaluate("stand-in", "heldout", n, Path(out), images=images)["metric_seconds"])
        print(f"evaluate metric section: {secs[-1]} s", flush=True)
    return {"n": len(rows), "runs_s": secs, "median_s": round(float(np.median(secs)), 1),
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    main()
