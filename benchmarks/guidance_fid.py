"""Guidance against quality on the held-out suite: what a classifier-free guidance scale buys in prompt adherence
(CLIP R@1, class-prompt accuracy, precision) and costs in distribution fit (fid_conjure, KID, recall).

Guidance sharpens each image towards its prompt and narrows the spread across seeds (Ho & Salimans, 2022), so
fid_conjure, which compares whole distributions, can rise while every adherence number improves. This runs
`conjure evaluate MODEL --suite heldout --n N --guidance G` for each G, the same prompts and seeds in every run,
and puts the numbers side by side. The model's default guidance reuses the images benchmarks/quality.py made.

Writes benchmarks/results/guidance_fid.{json,md,png} and one report folder per scale under
benchmarks/results/guidance_fid/ (metrics.json, report.md, samples.png).

    CONJURE_HOME=.cache/conjure python benchmarks/guidance_fid.py [--guidance 1 2 3 5 7] [--n 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from conjure.evaluation.report import mean_r1

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def row(guidance: float, m: dict) -> dict:
    """One scale's numbers from its metrics.json."""
    g, f = m["generated"], m["floor"]
    cls = m["class_prompt_accuracy"]
    return {"guidance": guidance, "fid_conjure": g["fid_conjure"], "fid_conjure_ci95": g["ci95"].get("fid_conjure"),
            "fid_ratio_to_floor": round(g["fid_conjure"] / f["fid_conjure"], 3),
            "kid_conjure": g["kid_conjure"], "precision_conjure": g["precision_conjure"],
            "recall_conjure": g["recall_conjure"], "clip_r1_heldout": mean_r1(m["clip_r1_generated"]),
            "clip_r1_n": sum(v["n"] for v in m["clip_r1_generated"].values()),
            "class_prompt_accuracy_mean": round(sum(cls.values()) / len(cls), 4),
            "class_prompt_accuracy_by_source": cls, "memorisation_rate": m["memorisation"]["generated"]["rate"],
            "generation_seconds": m["generation_seconds"], "images_from_cache": m.get("images_from_cache", 0)}


def findings(rows: list[dict], default: float) -> list[str]:
    """What the rows show, in sentences computed from them (nothing here is fixed in advance)."""
    best = min(rows, key=lambda r: r["fid_conjure"])
    top = max(rows, key=lambda r: r["clip_r1_heldout"])
    lines = [f"Lowest fid_conjure: guidance {best['guidance']:g} ({best['fid_conjure']:.2f}, "
             f"{best['fid_ratio_to_floor']:.2f}x the floor). Highest held-out CLIP R@1: guidance {top['guidance']:g} "
             f"({top['clip_r1_heldout']:.3f})."]
    here = [r for r in rows if r["guidance"] == default]
    if here and here[0] is not best:
        d, lo = here[0], best["fid_conjure_ci95"]
        apart = lo is not None and d["fid_conjure_ci95"] is not None and d["fid_conjure_ci95"][0] > lo[1]
        lines.append(f"At the model's default guidance {default:g}, fid_conjure is {d['fid_conjure']:.2f}: "
                     f"{d['fid_conjure'] / best['fid_conjure']:.2f}x the lowest, "
                     + ("with the two 95% intervals apart." if apart else "with the two 95% intervals overlapping."))
    if top.get("clip_r1_n"):      # R@1 is a share of images: two binomial standard errors of the best
        p = top["clip_r1_heldout"]
        floor = p - 2 * (p * (1 - p) / top["clip_r1_n"]) ** 0.5
        near = [r for r in rows if r["clip_r1_heldout"] >= floor]
        pick = min(near, key=lambda r: r["fid_conjure"])
        scales = ", ".join(f"{r['guidance']:g}" for r in sorted(near, key=lambda r: r["guidance"]))
        lines.append(f"CLIP R@1 within two binomial standard errors of the highest (at least {floor:.3f}): guidance "
                     f"{scales}; of "
                     f"these, guidance {pick['guidance']:g} has the lowest fid_conjure ({pick['fid_conjure']:.2f}).")
    ordered = sorted(rows, key=lambda r: r["guidance"])
    for key, name in (("recall_conjure", "recall"), ("precision_conjure", "precision")):
        vals = [r[key] for r in ordered]
        trend = ("falls" if all(b <= a for a, b in zip(vals, vals[1:])) else
                 "rises" if all(b >= a for a, b in zip(vals, vals[1:])) else "is not monotonic")
        lines.append(f"As guidance grows, {name} {trend} ({', '.join(f'{v:.3f}' for v in vals)}).")
    return lines


def generation_cell(x: dict, n: int) -> str:
    """Seconds spent generating in this run; images an earlier run made (the evaluation cache) are named."""
    k = x.get("images_from_cache") or 0
    if k >= n:
        return "cached"
    return f"{x['generation_seconds']:.0f}" + (f" ({k} cached)" if k else "")


def markdown(r: dict) -> str:
    lines = [f"# Guidance against quality: {r['model']} ({r['model_hash'][:12]}), held-out suite", "",
             f"{r['n_samples']} images per guidance scale over the held-out suite's prompts (the same prompts and "
             f"seeds at every scale), {r['steps']} steps of the model's default sampler, measured at 64x64 with "
             f"conjure-features against test-split images; the real-vs-real floor is {r['fid_floor']:.2f}. "
             "Precision and recall are Kynkaanniemi et al.'s (k = 3) in the same features. Class-prompt accuracy "
             "is the mean over sources of each source's class head.", "",
             "| guidance | fid_conjure | 95% CI | / floor | kid_conjure | precision | recall | CLIP R@1 held-out "
             "| class-prompt acc. (mean) | memorisation | generation s ('cached': images of an earlier run) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        ci = x["fid_conjure_ci95"]
        lines.append(f"| {x['guidance']:g} | {x['fid_conjure']:.2f} | "
                     + (f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a")
                     + f" | {x['fid_ratio_to_floor']:.2f} | {x['kid_conjure']:.3f} | {x['precision_conjure']:.3f} | "
                       f"{x['recall_conjure']:.3f} | {x['clip_r1_heldout']:.3f} | {x['class_prompt_accuracy_mean']:.3f} | "
                       f"{x['memorisation_rate']:.3f} | "
                       + generation_cell(x, r["n_samples"]) + " |")
    sources = sorted({s for x in r["rows"] for s in x.get("class_prompt_accuracy_by_source", {})})
    if sources:
        lines += ["", "Class-prompt accuracy per source (issue 3's target: at least 0.8 for each):", "",
                  "| guidance | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
        for x in r["rows"]:
            acc = x.get("class_prompt_accuracy_by_source", {})
            lines.append(f"| {x['guidance']:g} | " + " | ".join(f"{acc[s]:.3f}" if s in acc else "n/a"
                                                                  for s in sources) + " |")
    lines += ["", "## What it shows", ""] + [f"- {s}" for s in r["findings"]]
    lines += ["", "![guidance against quality](guidance_fid.png)", "",
              f"Reproduce: `CONJURE_HOME=.cache/conjure .venv/bin/python benchmarks/guidance_fid.py --guidance "
              f"{' '.join(f'{x:g}' for x in r['guidance'])} --n {r['n_samples']} --threads {r['threads']}` "
              f"({r['machine']}).", ""]
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = [x["guidance"] for x in r["rows"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    fid = [x["fid_conjure"] for x in r["rows"]]
    err = [[v - x["fid_conjure_ci95"][0] for v, x in zip(fid, r["rows"])],
           [x["fid_conjure_ci95"][1] - v for v, x in zip(fid, r["rows"])]]
    a.errorbar(xs, fid, yerr=err, marker="o", capsize=3, label="fid_conjure (95% CI)")
    a.axhline(r["fid_floor"], color="grey", ls="--", label="real-vs-real floor")
    a.set_xlabel("guidance scale"), a.set_ylabel("fid_conjure (lower is better)"), a.legend()
    for key, name in (("clip_r1_heldout", "CLIP R@1 held-out"), ("class_prompt_accuracy_mean", "class-prompt acc."),
                      ("precision_conjure", "precision"), ("recall_conjure", "recall")):
        b.plot(xs, [x[key] for x in r["rows"]], marker="o", label=name)
    b.set_xlabel("guidance scale"), b.set_ylim(0, 1), b.legend()
    fig.suptitle(f"{r['model']}: guidance against quality ({r['n_samples']} images per scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="conjure-tiny")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1, 2, 3, 5, 7])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads (2 on an idle 2-core CPU)")
    args = ap.parse_args()
    from conjure.evaluation.report import evaluate
    from conjure.pipelines.components import ModelSpec
    from conjure.pipelines.registry import get_model
    from conjure.pipelines.request import MAX_GUIDANCE
    if not args.guidance or any(not 0 <= g <= MAX_GUIDANCE for g in args.guidance) or args.n < 2:
        ap.error(f"--guidance takes scales between 0 and {MAX_GUIDANCE}, and --n must be at least 2")
    try:
        spec = ModelSpec.read(get_model(args.model).path)
    except (ValueError, FileNotFoundError) as e:
        ap.error(f"{e} (a conjure model folder is needed: its conjure.json gives the default guidance)")
    rows, metrics = [], {}
    for g in sorted(set(args.guidance)):
        t0 = time.time()
        m = evaluate(args.model, "heldout", args.n, RESULTS / "guidance_fid" / f"g{g:g}", seed=args.seed,
                     threads=args.threads, guidance=g)
        rows.append(row(g, m))
        metrics = m
        print(f"guidance {g:g}: fid_conjure {m['generated']['fid_conjure']:.2f}, {time.time() - t0:.0f} s",
              flush=True)
    from conjure.training.cpu import cpu_name
    r = {"model": args.model, "model_hash": metrics["model_hash"], "n_samples": metrics["n_samples"],
         "steps": spec.default_steps, "sampler": spec.default_scheduler, "default_guidance": spec.default_guidance,
         "guidance": sorted(set(args.guidance)), "fid_floor": metrics["floor"]["fid_conjure"], "rows": rows,
         "threads": args.threads,
         "machine": f"{cpu_name()}, {args.threads} thread(s), Python {platform.python_version()}"}
    r["findings"] = findings(rows, spec.default_guidance)
    (RESULTS / "guidance_fid.json").write_text(json.dumps(r, indent=1) + "\n")
    (RESULTS / "guidance_fid.md").write_text(markdown(r))
    plot(r, RESULTS / "guidance_fid.png")
    print(markdown(r))


if __name__ == "__main__":
    main()
