"""`conjure lab compare`: gather every evaluated run, write benchmarks/results/lab.json and the Markdown
report benchmarks/lab/README.md (the usual comparison table, with each adjective replaced by a number)."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

FAMILY_ORDER = ["gan", "vae", "ddpm", "ldm", "flow", "ar"]
TITLES = {"gan": "GAN (DCGAN-style, hinge, spectral norm, EMA)", "vae": "VAE (conditional beta-VAE, beta = 1)",
          "ddpm": "Pixel diffusion (DDPM, eps, DDIM 50 steps)", "ldm": "Latent diffusion (KL autoencoder, DDIM 50)",
          "flow": "Flow matching (rectified flow, Euler 50)", "ar": "Autoregressive (VQ 7x7 codes + transformer)"}


def collect(runs_dir: Path) -> dict[str, list[dict]]:
    """family -> the metrics.json of each of its evaluated runs (one per seed)."""
    out: dict[str, list[dict]] = {}
    for m in sorted(Path(runs_dir).glob("*/metrics.json")):
        r = json.loads(m.read_text())
        r["run"] = m.parent.name
        out.setdefault(r["family"] if not m.parent.name.startswith("gan-unstable") else "gan-unstable", []).append(r)
    return out


def summarise(runs: dict[str, list[dict]]) -> dict:
    """The lab.json layout: per family the main run's (seed 0, full budget) numbers and the spread over seeds."""
    fams = {}
    for fam in FAMILY_ORDER:
        rs = runs.get(fam, [])
        if not rs:
            continue
        main = max(rs, key=lambda r: (r["images_seen"], -r["seed"]))
        spread = spread_group(rs)
        fids = [r["fid_conjure"] for r in spread]
        fams[fam] = {
            "fid_conjure": main["fid_conjure"], "fid_conjure_ci95": main["fid_conjure_ci95"],
            "fid_conjure_floor": main["fid_conjure_floor"], "kid_conjure": main["kid_conjure"],
            "precision": main["precision"], "recall": main["recall"], "class_accuracy": main["class_accuracy"],
            "class_accuracy_real": main["class_accuracy_real"], "mode_coverage": main["cluster_coverage"],
            "classes_reached": main["classes_reached"], "sharpness": main["sharpness"],
            "sharpness_real": main["sharpness_real"], "train_seconds": main["train_seconds"],
            "images_seen": main["images_seen"], "stage_images": main["stage_images"],
            "train_flops": main["train_flops"], "sample_ms": main["sample_ms"], "nfe": main["nfe"],
            "sample_flops": main["sample_flops"], "parameters": main["sampling_params"],
            "all_parameters": main["parameters"], "n_samples": main["n_samples"],
            "seeds": sorted(r["seed"] for r in rs),
            "runs": [{"seed": r["seed"], "images_seen": r["images_seen"], "fid_conjure": r["fid_conjure"]}
                     for r in sorted(rs, key=lambda r: (r["seed"], r["images_seen"]))],
            "fid_spread": round(statistics.pstdev(fids), 4) if len(fids) > 1 else None,
            "fid_spread_mean": round(statistics.fmean(fids), 4) if len(fids) > 1 else None,
            "fid_spread_cv": round(statistics.pstdev(fids) / statistics.fmean(fids), 4) if len(fids) > 1 else None,
            "seed_runs": [{k: r[k] for k in ("seed", "images_seen", "fid_conjure", "precision", "recall",
                                            "class_accuracy", "cluster_coverage", "classes_reached")}
                          for r in sorted(spread, key=lambda r: r["seed"])] if len(fids) > 1 else [],
            "fid_spread_images": spread[0]["images_seen"] if len(fids) > 1 else None,
            "fid_spread_seeds": sorted(r["seed"] for r in spread) if len(fids) > 1 else [],
            "device": main["device"], "torch_threads": main["torch_threads"]}
    return {"families": fams}


def spread_group(runs: list[dict]) -> list[dict]:
    """The runs that a seed spread may compare: those at one budget (the budget with the most seeds; on a tie
    the larger), since a spread across budgets would measure training length, not seed."""
    by_budget: dict[int, list[dict]] = {}
    for r in runs:
        by_budget.setdefault(r["images_seen"], []).append(r)
    return max(by_budget.values(), key=lambda rs: (len(rs), rs[0]["images_seen"]))


def along_training(runs_dir: Path) -> dict[str, list[dict]]:
    """family -> its seed-0 run's evaluations at each budget it was evaluated at (metrics.atN.json kept when the
    run was extended, then metrics.json), smallest budget first."""
    out: dict[str, list[dict]] = {}
    for fam in FAMILY_ORDER:
        run = Path(runs_dir) / f"{fam}-seed0"
        files = sorted(run.glob("metrics.at*.json")) + ([run / "metrics.json"] if (run / "metrics.json").is_file() else [])
        rows = []
        for p in files:
            r = json.loads(p.read_text())
            rows.append({k: r[k] for k in ("images_seen", "fid_conjure", "fid_conjure_ci95", "precision", "recall",
                                           "class_accuracy", "cluster_coverage")})
        if len(rows) > 1:
            out[fam] = sorted(rows, key=lambda r: r["images_seen"])
    return out


SIDE_EVALUATIONS = {"ddpm1000-n500": "DDPM ancestral sampling, 1000 steps, 500 samples"}


def side_results(runs_dir: Path) -> dict[str, dict[str, dict]]:
    """family -> tag -> the seed-0 run's side evaluation (metrics.TAG.json, e.g. DDPM at 1000 steps)."""
    out: dict[str, dict[str, dict]] = {}
    for fam in FAMILY_ORDER:
        for tag in SIDE_EVALUATIONS:
            p = Path(runs_dir) / f"{fam}-seed0" / f"metrics.{tag}.json"
            if p.is_file():
                r = json.loads(p.read_text())
                out.setdefault(fam, {})[tag] = {k: r[k] for k in (
                    "fid_conjure", "fid_conjure_ci95", "fid_conjure_floor", "kid_conjure", "precision", "recall",
                    "class_accuracy", "sharpness", "sample_ms", "nfe", "n_samples", "images_seen")}
    return out


def _g(x: float) -> str:
    return f"{x:.3g}"


def _flops(x: float) -> str:
    return f"{x / 1e12:.1f} T" if x >= 1e12 else f"{x / 1e9:.2f} G"


def best_for(fam: str, s: dict) -> str:
    """A sentence that cites the numbers where this family ranks first."""
    f = s["families"]
    me, notes = f[fam], []

    def first(key: str, low: bool = True) -> bool:
        vals = [v[key] for v in f.values()]
        return me[key] == (min(vals) if low else max(vals))

    if first("fid_conjure"):
        notes.append(f"the best sample quality here (fid_conjure {_g(me['fid_conjure'])}, "
                     f"{me['fid_conjure'] / me['fid_conjure_floor']:.1f}x the floor)")
    if first("recall", low=False):
        notes.append(f"the widest coverage (recall {_g(me['recall'])})")
    if first("precision", low=False):
        notes.append(f"the most realistic samples (precision {_g(me['precision'])})")
    if first("class_accuracy", low=False):
        notes.append(f"following the prompt (class accuracy {_g(me['class_accuracy'])})")
    if first("sample_ms"):
        notes.append(f"the fastest sampling ({_g(me['sample_ms'])} ms per image, {me['nfe']} network evaluation)")
    if first("train_flops"):
        notes.append(f"the cheapest training ({_flops(me['train_flops'])}FLOP)")
    if fam == "vae" and "anomaly_auroc" in me:
        best = max(me["anomaly_auroc"], me.get("anomaly_auroc_complexity_corrected", 0))
        notes.append(f"an encoder as well as a sampler (latent interpolation and arithmetic; anomaly AUROC "
                     f"{_g(best)} against MNIST digits)")
    if not notes:
        ranks = sorted(f, key=lambda k: f[k]["fid_conjure"])
        notes.append(f"nothing measured here: quality rank {ranks.index(fam) + 1} of {len(f)} "
                     f"(fid_conjure {_g(me['fid_conjure'])}) at {_g(me['sample_ms'])} ms per image")
    text = "; ".join(notes)
    return text[:1].upper() + text[1:] + "."


def plot_losses(runs_dir: Path, path: Path) -> Path:
    """One panel per family: the training loss(es) against images seen, from each main run's log.jsonl."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    for ax, fam in zip(axes.flat, FAMILY_ORDER):
        log = Path(runs_dir) / f"{fam}-seed0" / "log.jsonl"
        if not log.is_file():
            ax.set_title(f"{fam}: no run")
            continue
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        stage = "prior" if any(r["stage"] == "prior" for r in rows) else "main"
        rows = [r for r in rows if r["stage"] == stage]
        keys = ["d_loss", "g_loss"] if fam == "gan" else (["loss"] if "loss" in rows[0] else [])
        for k in keys:
            ax.plot([r["images"] for r in rows], [r[k] for r in rows], label=k, lw=0.8)
        ax.set_title(f"{fam} ({stage})")
        ax.set_xlabel("images seen")
        if fam in ("vae",):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _claims(s: dict, demos: dict) -> list[str]:
    """Each usual claim beside what the numbers here say."""
    f, out = s["families"], []

    def rank(key: str, fam: str, low: bool = True) -> int:
        order = sorted(f, key=lambda k: f[k][key] if low else -f[k][key])
        return order.index(fam) + 1

    n = len(f)
    if "gan" in f:
        g = f["gan"]
        line = (f"- **GANs are sharp but unstable and prone to mode collapse.** Sharpness (mean |Laplacian|) "
                f"{_g(g['sharpness'])} against {_g(g['sharpness_real'])} for real images (rank "
                f"{rank('sharpness', 'gan', low=False)} of {n}); precision {_g(g['precision'])} (rank "
                f"{rank('precision', 'gan', low=False)}), recall {_g(g['recall'])} (rank {rank('recall', 'gan', low=False)}), "
                f"cluster coverage {_g(g['mode_coverage'])}.")
        hist = s.get("along_training", {}).get("gan")
        if hist:
            line += (" Along training (one run, extended): fid_conjure " + " -> ".join(
                f"{_g(h['fid_conjure'])} at {h['images_seen']:,}" for h in hist) + ", recall " + " -> ".join(
                _g(h["recall"]) for h in hist) + ".")
        seeded = {k: v for k, v in f.items() if v.get("fid_spread_cv") is not None}
        if "gan" in seeded and len(seeded) > 1:
            order = sorted(seeded, key=lambda k: -seeded[k]["fid_spread_cv"])
            line += (f" Over seeds at {g['fid_spread_images']:,} images its fid_conjure varies by "
                     f"{g['fid_spread_cv']:.0%} of the mean (rank {order.index('gan') + 1} of {len(seeded)} for spread; "
                     + ", ".join(f"{k} {seeded[k]['fid_spread_cv']:.0%}" for k in order if k != "gan") + ").")
        col = demos.get("collapse")
        if col:
            u = col["gan-unstable-seed0"]
            line += (f" The deliberately unstable setting (no spectral norm, BCE loss, lr 1e-3, no EMA): "
                     f"{'mode collapse detected' if col['collapse_detected']['collapsed'] else 'no collapse detected'}"
                     f" ({'; '.join(col['collapse_detected']['reasons']) or 'every check passed'}; recall "
                     f"{_g(u['recall'])}, cluster coverage {_g(u['cluster_coverage'])}, {u['classes_reached']} classes).")
        out.append(line)
    if "vae" in f:
        v = f["vae"]
        out.append(f"- **VAEs are stable but blurry.** Sharpness {_g(v['sharpness'])} against {_g(v['sharpness_real'])} "
                   f"real (rank {rank('sharpness', 'vae', low=False)} of {n}); fid_conjure {_g(v['fid_conjure'])} "
                   f"(rank {rank('fid_conjure', 'vae')} of {n}).")
    diff = [k for k in ("ddpm", "ldm", "flow") if k in f]
    if diff:
        best = min(f, key=lambda k: f[k]["fid_conjure"])
        out.append(f"- **Diffusion is excellent but slow.** Best fid_conjure here: {best} ({_g(f[best]['fid_conjure'])}). "
                   + "; ".join(f"{k}: fid {_g(f[k]['fid_conjure'])}, {_g(f[k]['sample_ms'])} ms and {f[k]['nfe']} "
                               f"network evaluations per image" for k in diff)
                   + (f"; against the GAN's {_g(f['gan']['sample_ms'])} ms." if "gan" in f else ".")
                   + "".join(f" {k} with DDPM's own ancestral sampler at 1000 steps ({r['n_samples']} samples): "
                             f"fid {_g(r['fid_conjure'])} against a floor of {_g(r['fid_conjure_floor'])} at that n, "
                             f"{_g(r['sample_ms'])} ms per image."
                             for k in diff if (r := f[k].get("side_evaluations", {}).get("ddpm1000-n500"))))
    st = demos.get("steps")
    if st:
        def at(fam: str, sampler: str, steps: int):
            return next((r for r in st["rows"].get(fam, []) if r["sampler"] == sampler and r["steps"] == steps), None)
        pts = [(fam, smp, k) for fam, smp in (("ddpm", "ddim"), ("ddpm", "ddpm"), ("ldm", "ddim"), ("flow", "euler"),
                                              ("flow", "heun")) for k in (5, 10)]
        txt = "; ".join(f"{fam} {smp} {k} steps: fid {_g(r['fid_conjure'])}" for fam, smp, k in pts
                        if (r := at(fam, smp, k)))
        few = []          # per (family, sampler): the point with the most network evaluations up to 10
        for fam, rows in st["rows"].items():
            for smp in dict.fromkeys(r["sampler"] for r in rows):
                pts = [r for r in rows if r["sampler"] == smp and r["nfe"] <= 10]
                if pts:
                    few.append((fam, smp, max(pts, key=lambda r: r["nfe"])))
        verdict = ""
        if few:
            fam, smp, r = min(few, key=lambda x: x[2]["fid_conjure"])
            flow_best = min((x for x in few if x[0] == "flow"), key=lambda x: x[2]["fid_conjure"], default=None)
            verdict = (f" At 10 network evaluations or fewer the best here is {fam} with {smp} (fid {_g(r['fid_conjure'])} "
                       f"at {r['nfe']} NFE)" + (f"; flow matching's best is {_g(flow_best[2]['fid_conjure'])} "
                                                f"({flow_best[1]}, {flow_best[2]['nfe']} NFE)" if flow_best else "")
                       + (": the claim holds here." if fam == "flow" else
                          f": flow matching beats {', '.join(beaten)} in few steps, but not {fam}."
                          if flow_best and (beaten := sorted({x[0] for x in few if x[0] != 'flow' and
                                                              x[2]['fid_conjure'] > flow_best[2]['fid_conjure']}))
                          else ": the claim does not hold here."))
        out.append(f"- **Flow matching is fast (good in few steps).** On {st['n']} samples per point: {txt}.{verdict}")
    ddpm_note = _pixel_ddpm_note(f, demos)
    if ddpm_note:
        out.append(ddpm_note)
    if "ar" in f:
        a = f["ar"]
        out.append(f"- **Autoregressive models are slow, token by token.** {a['nfe']} sequential network evaluations "
                   f"per image (key/value cache), {_g(a['sample_ms'])} ms per image (rank {rank('sample_ms', 'ar')} of {n} "
                   f"for speed); fid_conjure {_g(a['fid_conjure'])} (rank {rank('fid_conjure', 'ar')}).")
    return out


def _pixel_ddpm_note(f: dict, demos: dict) -> str:
    """What the pixel DDPM's DDIM residue comes from, from the 1000-step side evaluation and the denoise demo."""
    d = f.get("ddpm")
    side = (d or {}).get("side_evaluations", {}).get("ddpm1000-n500")
    if not side:
        return ""
    text = (f"- **Pixel DDPM: sampler or model?** With DDIM at 50 steps its samples keep a salt-and-pepper residue "
            f"(fid_conjure {_g(d['fid_conjure'])}, sharpness {_g(d['sharpness'])} against {_g(d['sharpness_real'])} "
            f"for real images); the same weights with DDPM's ancestral sampler at 1000 steps give fid_conjure "
            f"{_g(side['fid_conjure'])} on {side['n_samples']} samples (floor {_g(side['fid_conjure_floor'])} at that n), "
            f"sharpness {_g(side['sharpness'])}, at {_g(side['sample_ms'])} ms per image.")
    st = demos.get("steps", {}).get("rows", {}).get("ddpm", [])
    pair = {r["sampler"]: r for r in st if r["steps"] == 50}
    if "ddim" in pair and "ddpm" in pair:
        text += (f" At the same 50 steps on {pair['ddim']['n']} samples, the ancestral sampler gives fid_conjure "
                 f"{_g(pair['ddpm']['fid_conjure'])} against DDIM's {_g(pair['ddim']['fid_conjure'])}.")
    dn = demos.get("denoise")
    if dn and "flow_x0_rmse" in dn["rows"][0]:
        hi = [r for r in dn["rows"] if r["snr"] >= 1]
        lo = [r for r in dn["rows"] if r["snr"] < 0.01]
        if hi and lo:
            h, l_ = hi[-1], lo[0]
            text += (f" At equal noise levels the eps network recovers the clean image about as well as flow "
                     f"matching's velocity network where the signal dominates (implied x0 RMSE {h['ddpm_x0_rmse']} against "
                     f"{h['flow_x0_rmse']} at SNR {h['snr']:.2g}), and far worse where noise dominates ({l_['ddpm_x0_rmse']} "
                     f"against {l_['flow_x0_rmse']} at SNR {l_['snr']:.2g}): an eps model's clean-image estimate divides its "
                     f"error by sqrt(alpha_bar), the reason Salimans & Ho (2022) give for predicting v instead. The "
                     f"ancestral sampler adds fresh noise at every step, which washes such early errors out; the "
                     f"deterministic one carries them to the end (Karras et al. 2022, section 4, on stochastic sampling "
                     f"correcting earlier errors). The model is not broken; DDIM at 50 steps is the wrong sampler for it "
                     f"at this budget.")
    return text


def write_report(runs_dir: Path, out_dir: Path, results: Path) -> Path:
    runs = collect(runs_dir)
    if not runs:
        raise FileNotFoundError(f"no evaluated runs under {runs_dir}; run: conjure lab evaluate RUN_DIR")
    s = summarise(runs)
    speed = results.parent / "lab_sampling.json"
    if speed.is_file():      # the side-by-side benchmark's medians replace the single timing of each evaluation
        for fam, v in json.loads(speed.read_text())["families"].items():
            if fam in s["families"]:
                s["families"][fam]["sample_ms_eval"] = s["families"][fam]["sample_ms"]
                s["families"][fam]["sample_ms"] = v["sample_ms_median"]
        s["sample_ms_source"] = "benchmarks/results/lab_sampling.json (interleaved medians)"
    demos = {k: json.loads(p.read_text()) for k in ("vae", "steps", "denoise", "collapse")
             if (p := Path(runs_dir) / f"demos-{k}.json").is_file()}
    if "vae" in demos and "vae" in s["families"]:
        for k in ("anomaly_auroc", "anomaly_auroc_complexity_corrected"):
            if k in demos["vae"]:
                s["families"]["vae"][k] = demos["vae"][k]
    s["demos"] = demos
    s["along_training"] = along_training(runs_dir)
    for fam, tags in side_results(runs_dir).items():
        if fam in s["families"]:
            s["families"][fam]["side_evaluations"] = tags
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(s, indent=1))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples").mkdir(exist_ok=True)
    for fam in s["families"]:
        shutil.copy2(Path(runs_dir) / f"{fam}-seed0" / "samples.png", out_dir / "samples" / f"{fam}.png")
    for pic in ("vae-interpolation.png", "quality-vs-steps.png"):
        if (Path(runs_dir) / pic).is_file():
            shutil.copy2(Path(runs_dir) / pic, out_dir / pic)
    plot_losses(runs_dir, out_dir / "loss-curves.png")
    (out_dir / "README.md").write_text(report_markdown(s))
    return out_dir / "README.md"


def along_training_table(hist: dict[str, list[dict]]) -> list[str]:
    """fid_conjure (and recall) of each family's main run at each budget it was evaluated at."""
    if not hist:
        return []
    budgets = sorted({h["images_seen"] for rows in hist.values() for h in rows})
    out = ["Quality along training (the same seed-0 run, evaluated when it reached each budget; fid_conjure, "
           "recall in brackets):", "", "| family | " + " | ".join(f"{b:,} images" for b in budgets) + " |",
           "|---" * (len(budgets) + 1) + "|"]
    for fam, rows in hist.items():
        at = {h["images_seen"]: h for h in rows}
        out.append(f"| {fam} | " + " | ".join(f"{_g(at[b]['fid_conjure'])} ({_g(at[b]['recall'])})" if b in at else ""
                                              for b in budgets) + " |")
    return out + [""]


def steps_table(st: dict, f: dict) -> list[str]:
    """fid_conjure at each step count, one column per (family, sampler); the 1000-step ancestral point beside."""
    cols = [(fam, smp) for fam, rows in st["rows"].items() for smp in dict.fromkeys(r["sampler"] for r in rows)]
    steps = sorted({r["steps"] for rows in st["rows"].values() for r in rows})
    out = ["", f"fid_conjure on {st['n']} samples per point (floor at that n: {_g(st['fid_conjure_floor'])}):", "",
           "| steps | " + " | ".join(f"{fam} {smp}" for fam, smp in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for k in steps:
        cells = []
        for fam, smp in cols:
            r = next((r for r in st["rows"][fam] if r["sampler"] == smp and r["steps"] == k), None)
            cells.append(f"{_g(r['fid_conjure'])} ({r['nfe']} NFE)" if r else "")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    side = {fam: v["side_evaluations"]["ddpm1000-n500"] for fam, v in f.items()
            if "ddpm1000-n500" in v.get("side_evaluations", {})}
    if side:
        out.append(f"| 1000 | " + " | ".join(
            f"{_g(side[fam]['fid_conjure'])} ({side[fam]['n_samples']} samples)" if fam in side and smp == "ddpm" else ""
            for fam, smp in cols) + " |")
    return out


def seeds_table(f: dict) -> list[str]:
    """Every extra-seed run beside its family's main run: the spread, and whether the small budget converged."""
    fams = {fam: v for fam, v in f.items() if v.get("seed_runs")}
    if not fams:
        return []
    budgets = sorted({v["fid_spread_images"] for v in fams.values()})
    out = ["", f"Extra seeds (the same recipe; the seed sets initialisation and data order; the evaluation's sampling seeds are the same for every run) at "
           f"{', '.join(f'{b:,}' for b in budgets)} images; the main run (seed 0, {max(v['images_seen'] for v in f.values()):,} "
           "images) beside:", "",
           "| family | seed | images seen | fid_conjure | precision | recall | class acc. | classes / cluster coverage |",
           "|---|---|---|---|---|---|---|---|"]
    for fam, v in fams.items():
        for r in v["seed_runs"]:
            out.append(f"| {fam} | {r['seed']} | {r['images_seen']:,} | {_g(r['fid_conjure'])} | {_g(r['precision'])} | "
                       f"{_g(r['recall'])} | {_g(r['class_accuracy'])} | {r['classes_reached']} / {_g(r['cluster_coverage'])} |")
        out.append(f"| {fam} | mean ± std | {v['fid_spread_images']:,} | {_g(v['fid_spread_mean'])} ± {v['fid_spread']:.3g} "
                   f"({v['fid_spread_cv']:.0%}) | | | | |")
        out.append(f"| {fam} | 0 (main) | {v['images_seen']:,} | {_g(v['fid_conjure'])} | {_g(v['precision'])} | "
                   f"{_g(v['recall'])} | {_g(v['class_accuracy'])} | {v['classes_reached']} / {_g(v['mode_coverage'])} |")
    ranked = sorted(fams, key=lambda k: fams[k]["fid_spread_cv"], reverse=True)
    out += ["", "Relative spread over seeds (std / mean of fid_conjure), largest first: "
            + ", ".join(f"{k} {fams[k]['fid_spread_cv']:.0%}" for k in ranked) + ". With two seeds per family this is "
            "a rough estimate: read it as an order of magnitude."]
    far = [k for k, v in fams.items() if v["fid_spread_mean"] > 3 * v["fid_conjure"]]
    near = [k for k in fams if k not in far]
    if far:
        out.append("Still far from their full-budget quality at " + f"{fams[far[0]]['fid_spread_images']:,} images "
                   "(mean fid_conjure more than 3x seed 0's): " + ", ".join(
                       f"{k} {_g(fams[k]['fid_spread_mean'])} against {_g(fams[k]['fid_conjure'])} "
                       f"({fams[k]['fid_spread_mean'] / fams[k]['fid_conjure']:.1f}x)" for k in far)
                   + ". Their spreads there are spreads of unfinished models and say little about stability at the "
                   "full budget." + (" Closer: " + ", ".join(
                       f"{k} {_g(fams[k]['fid_spread_mean'])} against {_g(fams[k]['fid_conjure'])} "
                       f"({fams[k]['fid_spread_mean'] / fams[k]['fid_conjure']:.1f}x)" for k in near) + "."
                                     if near else ""))
    return out


def denoise_section(dn: dict) -> list[str]:
    """The pixel DDPM against flow matching at equal noise levels: why its deterministic sampler leaves noise."""
    rows = dn["rows"]
    has_flow = "flow_x0_rmse" in rows[0]
    out = ["", f"Denoising one noised copy of {dn['n']} validation images (`conjure lab demos denoise`): the error "
           "of the clean image each pixel model implies, at DDPM's noise levels (flow matching at the same "
           "signal-to-noise ratio). RMS error in pixels of [-1, 1]:", "",
           "| DDPM t | SNR | DDPM eps MSE | DDPM implied x0 RMSE |" + (" flow time | flow implied x0 RMSE |" if has_flow else ""),
           "|---|---|---|---|" + ("---|---|" if has_flow else "")]
    for r in rows:
        out.append(f"| {r['t']} | {r['snr']:.3g} | {r['ddpm_eps_mse']} | {r['ddpm_x0_rmse']} |"
                   + (f" {r['flow_time']} | {r['flow_x0_rmse']} |" if has_flow else ""))
    return out


def report_markdown(s: dict) -> str:
    f = s["families"]
    any_ = next(iter(f.values()))
    lines = ["# Model-family lab: six families, one dataset, one loop, one set of measurements", "",
             "Every family is trained from scratch on the Fashion-MNIST training split (28x28, dark on white), "
             "conditioned on the pooled MiniLM vector of its caption (\"a photo of a sneaker\", \"sneaker\", \"a sneaker\") "
             "through the same adapter, with the same loop (`src/conjure/lab/train.py`: batch 128, AdamW, EMA by "
             "half-life, prompt dropout 0.1 where the family can use it), and judged by the same code "
             "(`src/conjure/lab/evaluate.py`) on "
             f"{any_['n_samples']} samples (200 per class prompt \"a photo of a CLASS\", fixed seeds) at 64x64 with "
             "conjure's own feature classifier, v1 (`models/conjure-features-v1`, the lab's pinned judge): `fid_conjure` is not Inception FID. "
             "Every family samples without classifier-free guidance (one network evaluation per step), so that "
             "no family gets a knob the others lack; DDPM and latent diffusion use DDIM at 50 steps (and, on 500 samples, "
             "DDPM's ancestral sampler at 1000 steps), flow matching "
             "Euler at 50 steps, the autoregressive model 49 codes with a key/value cache. "
             f"The floor is real-vs-real: {any_['n_samples']} validation images against {any_['n_samples']} test images.", "",
             f"Device: CPU ({any_['torch_threads']} torch threads per process on a shared 2-core machine), no GPU. "
             "Wall times were taken while other jobs ran on the same machine: compare FLOPs for cost.", "",
             "Reproduce: `conjure lab train FAMILY --images N` for each family, `conjure lab evaluate runs/lab/FAMILY-seed0`, "
             "`conjure lab evaluate runs/lab/ddpm-seed0 --sampler ddpm --steps 1000 --n 500` (and ldm), "
             "`conjure lab demos vae|steps|denoise|collapse`, then `conjure lab compare`; or all of it, seeds included: "
             "`bash recipes/lab.sh`.", "",
             "## Measurements", "",
             "| family | params (sampling net) | images seen | train time | train FLOPs | fid_conjure [95% CI] | floor | KID | precision | recall | class acc. | classes / cluster coverage | sharpness | NFE | ms / image | sampling FLOPs / image |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for fam, v in f.items():
        seen = f"{v['images_seen']:,}" + "".join(f" + {n:,} autoencoder" for st, n in v["stage_images"].items()
                                                 if st == "autoencoder")
        ci = v["fid_conjure_ci95"]
        lines.append(f"| {TITLES[fam]} | {v['parameters'] / 1e6:.2f}M | {seen} | {v['train_seconds'] / 60:.0f} min | "
                     f"{_flops(v['train_flops'])} | {_g(v['fid_conjure'])} [{_g(ci[0])}, {_g(ci[1])}] | "
                     f"{_g(v['fid_conjure_floor'])} | {_g(v['kid_conjure'])} | {_g(v['precision'])} | {_g(v['recall'])} | "
                     f"{_g(v['class_accuracy'])} | {v['classes_reached']} / {_g(v['mode_coverage'])} | "
                     f"{_g(v['sharpness'])} | {v['nfe']} | {_g(v['sample_ms'])} | {_flops(v['sample_flops'])} |")
    lines += ["", f"Real test images: class accuracy {_g(any_['class_accuracy_real'])} (the classifier's own ceiling), "
              f"sharpness {_g(any_['sharpness_real'])}. Parameters within 2x: "
              f"{min(v['parameters'] for v in f.values()) / 1e6:.2f}M to {max(v['parameters'] for v in f.values()) / 1e6:.2f}M.", "",
              *along_training_table(s.get("along_training", {})),
              "## The usual comparison table, with numbers", "",
              "| family | quality | training stability | inference speed | best for |", "|---|---|---|---|---|"]
    for fam, v in f.items():
        stab = (f"fid_conjure {_g(v['fid_spread_mean'])} ± {v['fid_spread']:.3g} (std; {v['fid_spread_cv']:.0%} of the "
                f"mean) over seeds {v['fid_spread_seeds']} at {v['fid_spread_images']:,} images"
                if v["fid_spread"] is not None else "one seed only: spread not measured")
        lines.append(f"| {fam} | fid_conjure {_g(v['fid_conjure'])} ({v['fid_conjure'] / v['fid_conjure_floor']:.1f}x floor), "
                     f"precision {_g(v['precision'])}, recall {_g(v['recall'])} | {stab} | {v['nfe']} NFE, "
                     f"{_g(v['sample_ms'])} ms | {best_for(fam, s)} |")
    lines += seeds_table(f)
    lines += ["", "## Where the usual claims hold on this data", ""] + _claims(s, s.get("demos", {}))
    d = s.get("demos", {})
    if "vae" in d:
        v = d["vae"]
        lines += ["", "## Demonstrations", "", "VAE latent interpolation (rows: sneaker to ankle boot, t-shirt to dress, "
                  "bag to trouser):", "", "![VAE interpolation](vae-interpolation.png)", "",
                  f"- Anomaly score (negative ELBO, null condition): AUROC {v['anomaly_auroc']} separating "
                  f"{v['n_fashion']} Fashion-MNIST test images from {v['n_mnist']} MNIST digits"
                  + (" (below 0.5: the VAE gives the digits, mostly white page, a higher likelihood than garments, as "
                     "Nalisnick et al. 2019 found for likelihood models)" if v["anomaly_auroc"] < 0.5 else "")
                  + (f"; minus the PNG length of the image (Serra et al. 2020's complexity correction): AUROC "
                     f"{v['anomaly_auroc_complexity_corrected']}." if "anomaly_auroc_complexity_corrected" in v else "."),
                  f"- Attribute arithmetic z - mean(A) + mean(B): the classifier calls {v['arithmetic_accuracy']:.0%} of "
                  f"{v['n']} results class B; keeping z and swapping the condition to B: {v['condition_swap_accuracy']:.0%}."]
    if "steps" in d:
        lines += ["", "Quality against sampling steps:", "", "![quality against steps](quality-vs-steps.png)"]
        lines += steps_table(d["steps"], f)
    if "denoise" in d:
        lines += denoise_section(d["denoise"])
    if "collapse" in d:
        c = d["collapse"]
        from conjure.lab.demos import detect_collapse
        stable = detect_collapse(c["gan-seed0"], c["gan-seed0"])
        lines += ["", f"Mode collapse check on {c['n']} samples each: stable GAN "
                  f"{json.dumps({k: c['gan-seed0'][k] for k in ('recall', 'cluster_coverage', 'classes_reached')})}; "
                  f"unstable GAN {json.dumps({k: c['gan-unstable-seed0'][k] for k in ('recall', 'cluster_coverage', 'classes_reached')})}: "
                  f"{'collapse detected (' + '; '.join(c['collapse_detected']['reasons']) + ')' if c['collapse_detected']['collapsed'] else 'no collapse detected'}. "
                  + (f"The same checks flag the stable GAN too ({'; '.join(stable['reasons'])}): it is less collapsed, "
                     f"not free of it." if stable["collapsed"] else "The same checks pass the stable GAN.")]
    lines += ["", "## Samples (rows: classes; same seeds for every family)", ""]
    lines += [f"**{fam}**\n\n![{fam}](samples/{fam}.png)\n" for fam in f]
    lines += ["## Training curves", "", "![loss curves](loss-curves.png)", ""]
    return "\n".join(lines) + "\n"
