"""The lab's demonstrations: VAE latent interpolation, attribute arithmetic and anomaly detection; quality
against sampling steps for diffusion and flow matching; how well pixel DDPM and flow matching denoise at equal
noise levels; mode collapse on a deliberately unstable GAN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from conjure.lab.data import CLASSES, load_split, mnist_digits, text_for, to_uint8


def auroc(scores_neg: torch.Tensor, scores_pos: torch.Tensor) -> float:
    """Area under the ROC curve for 'positive scores are higher': the Mann-Whitney U statistic over all pairs,
    ties counted half."""
    a, b = scores_neg.double(), scores_pos.double()
    ranks = torch.cat([a, b]).argsort().argsort().double() + 1
    allv = torch.cat([a, b])
    for v in allv.unique():                       # average ranks over ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    u = ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2
    return float(u / (len(a) * len(b)))


def png_nats(x: torch.Tensor) -> torch.Tensor:
    """Lossless PNG length of each (N, 1, 28, 28) image in nats: the input-complexity estimate of Serra et al.
    (2020), "Input complexity and out-of-distribution detection with likelihood-based generative models"."""
    import io
    import math

    from PIL import Image
    out = []
    for g in to_uint8(x)[..., 0]:
        buf = io.BytesIO()
        Image.fromarray(g).save(buf, format="PNG", optimize=True)
        out.append(8 * len(buf.getvalue()) * math.log(2))
    return torch.tensor(out)


@torch.no_grad()
def vae_anomaly_auroc(vae, n: int = 5000) -> dict:
    """Anomaly scores for Fashion-MNIST test images (normal) against MNIST digits (anomalies), as AUROC:
    the negative ELBO under the null condition, and the same minus the image's PNG length (the
    complexity-corrected score of Serra et al. 2020: likelihood models favour simple images, and a digit on a
    white page is simpler than a garment)."""
    fashion = load_split("test", limit=n).x
    digits = mnist_digits()[:n]
    null = torch.zeros(1, 384)

    def score(x: torch.Tensor) -> torch.Tensor:
        out = []
        for b in x.split(500):
            drop = torch.ones(len(b), dtype=torch.bool)
            out.append(vae.neg_elbo(b, null.expand(len(b), -1), drop, beta=1.0, sample=False)[2])
        return torch.cat(out)

    s_f, s_d = score(fashion), score(digits)
    c_f, c_d = s_f - png_nats(fashion), s_d - png_nats(digits)
    return {"anomaly_auroc": round(auroc(s_f, s_d), 4), "anomaly_auroc_complexity_corrected": round(auroc(c_f, c_d), 4),
            "neg_elbo_fashion": round(float(s_f.mean()), 2), "neg_elbo_mnist": round(float(s_d.mean()), 2),
            "n_fashion": len(fashion), "n_mnist": len(digits)}


def _strip(rows: list[torch.Tensor], path: Path, scale: int = 2) -> Path:
    from PIL import Image
    grid = np.concatenate([np.concatenate(list(to_uint8(r)[..., 0]), axis=1) for r in rows], axis=0)
    img = Image.fromarray(grid)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)
    return path


@torch.no_grad()
def vae_interpolation(vae, out: Path, pairs: list[tuple[int, int]] = ((7, 9), (0, 3), (8, 1)), steps: int = 10) -> Path:
    """Encode one test image of each class in a pair, decode evenly spaced points between their latent means
    (null condition), one row per pair."""
    d = load_split("test", limit=2000)
    null_text, rows = torch.zeros(1, 384), []
    cond = vae.cond(null_text, torch.ones(1, dtype=torch.bool))
    for a, b in pairs:
        xa, xb = d.x[(d.y == a).nonzero()[0]], d.x[(d.y == b).nonzero()[0]]
        za, _ = vae.encode(xa, cond)
        zb, _ = vae.encode(xb, cond)
        w = torch.linspace(0, 1, steps)[:, None]
        rows.append(vae.decode((1 - w) * za + w * zb, cond.expand(steps, -1)))
    return _strip(rows, out)


@torch.no_grad()
def vae_arithmetic(vae, per_class: int = 200) -> dict:
    """Attribute arithmetic in the latent space (null condition): z(image of A) - mean z(A) + mean z(B), decoded;
    the share the classifier calls B. Beside it, the same images with the condition swapped to B and their own z
    kept (style kept, class changed)."""
    from conjure.lab.evaluate import _class_index_map, feature_net
    from conjure.evaluation.metrics import features_of
    from conjure.lab.data import to_metric_images
    d = load_split("test", limit=5000)
    null = vae.cond(torch.zeros(1, 384), torch.ones(1, dtype=torch.bool))
    mus = torch.cat([vae.encode(b, null.expand(len(b), -1))[0] for b in d.x.split(500)])
    means = torch.stack([mus[d.y == c].mean(0) for c in range(len(CLASSES))])
    g = torch.Generator().manual_seed(0)
    head = feature_net().heads["fashion_class"]

    def called_b(imgs: torch.Tensor, b: torch.Tensor) -> int:
        pred = head(features_of(feature_net(), to_metric_images(to_uint8(imgs))).float()).argmax(1)
        return int((pred == _class_index_map()[b]).sum())

    hits_arith = hits_swap = total = 0
    for a in range(len(CLASSES)):
        idx = (d.y == a).nonzero().flatten()[:per_class // len(CLASSES) * 2]
        b = (a + 1 + torch.randint(len(CLASSES) - 1, (len(idx),), generator=g)) % len(CLASSES)
        hits_arith += called_b(vae.decode(mus[idx] - means[a] + means[b], null.expand(len(idx), -1)), b)
        hits_swap += called_b(vae.decode(mus[idx], vae.cond(text_for(b, prompt_only=True))), b)
        total += len(idx)
    return {"arithmetic_accuracy": round(hits_arith / total, 4), "condition_swap_accuracy": round(hits_swap / total, 4),
            "n": total}


def steps_study(family, steps_list: list[int], samplers: list[str], n: int = 500, seed: int = 0) -> list[dict]:
    """fid_conjure (and class accuracy) against sampling steps, on n samples per point."""
    from conjure.lab.evaluate import generate, score_images
    rows = []
    for sampler in samplers:
        for steps in steps_list:
            images, y, timing = generate(family, n, seed, steps, sampler)
            s = score_images(images, y, n_ref=n, bootstrap=10)
            rows.append({"sampler": sampler, "steps": steps, "nfe": timing["nfe"], "sample_ms": timing["sample_ms"],
                         "fid_conjure": s["fid_conjure"], "fid_conjure_ci95": s["fid_conjure_ci95"],
                         "class_accuracy": s["class_accuracy"], "n": n})
            print(json.dumps(rows[-1]), flush=True)
    return rows


@torch.no_grad()
def denoising_errors(ddpm, flow=None, timesteps=(1, 10, 50, 100, 250, 500, 750, 999), n: int = 500) -> list[dict]:
    """How well each pixel model recovers a clean validation image from one noised copy, at DDPM's noise levels.

    For DDPM timestep t (alpha_bar a): the eps model's error on the noise, and its implied clean image
    x0 = (x_t - sqrt(1 - a) eps) / sqrt(a). For flow matching at the same signal-to-noise ratio, which is
    a / (1 - a) = (s / (1 - s))^2 at flow time s: its implied x0 = x_s + (1 - s) v. Error is RMS in [-1, 1] pixels."""
    d = load_split("validation", limit=n, seed=0)
    text = text_for(d.y, prompt_only=True)
    g = torch.Generator().manual_seed(0)
    net = ddpm.net_for_sampling().eval()
    rows = []
    for t in timesteps:
        a = ddpm.alpha_bar[t]
        eps = torch.randn(d.x.shape, generator=g)
        x_t = a.sqrt() * d.x + (1 - a).sqrt() * eps
        pred = net(x_t, torch.full((n,), float(t)), text)
        x0 = (x_t - (1 - a).sqrt() * pred) / a.sqrt()
        row = {"t": t, "snr": float(a / (1 - a)), "ddpm_eps_mse": round(float((pred - eps).square().mean()), 4),
               "ddpm_x0_rmse": round(float((x0 - d.x).square().mean().sqrt()), 4)}
        if flow is not None:
            s_ = float(a.sqrt() / (a.sqrt() + (1 - a).sqrt()))
            x_s = (1 - s_) * eps + s_ * d.x
            v = flow.net_for_sampling().eval()(x_s, torch.full((n,), s_), text)
            row["flow_time"] = round(s_, 4)
            row["flow_x0_rmse"] = round(float((x_s + (1 - s_) * v - d.x).square().mean().sqrt()), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def plot_steps(rows_by_family: dict[str, list[dict]], floor: float, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for fam, rows in rows_by_family.items():
        for sampler in sorted({r["sampler"] for r in rows}):
            rs = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["nfe"])
            ax.plot([r["nfe"] for r in rs], [r["fid_conjure"] for r in rs], marker="o", label=f"{fam} ({sampler})")
    ax.axhline(floor, color="grey", ls="--", label="real-vs-real floor")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per image")
    ax.set_ylabel("fid_conjure (lower is better)")
    ax.set_title("Quality against sampling steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(what: str, runs: Path, n: int = 500) -> Path:
    """Run one demonstration over the runs folder and write runs/demos-WHAT.json (plus its pictures)."""
    from conjure.lab.train import load_trained
    runs = Path(runs)

    def trained(name: str):
        model = runs / name / "model"
        if not (model / "config.json").is_file():
            raise FileNotFoundError(f"no finished run at {model.parent}; train it with: conjure lab train "
                                    f"{name.split('-seed')[0]}")
        return load_trained(model)[0]

    out = runs / f"demos-{what}.json"
    if what == "vae":
        vae = trained("vae-seed0").net_for_sampling()
        result = {**vae_anomaly_auroc(vae), **vae_arithmetic(vae),
                  "interpolation": str(vae_interpolation(vae, runs / "vae-interpolation.png"))}
    elif what.startswith("steps"):          # "steps" (all), or "steps-FAMILY" (one, merged into the rest)
        from conjure.lab.evaluate import floor_metrics
        # pixel DDPM with both its deterministic (DDIM) and its ancestral (DDPM) sampler at the same steps
        samplers = {"ddpm": ["ddim", "ddpm"], "ldm": ["ddim"], "flow": ["euler", "heun"]}
        fams = [what.split("-", 1)[1]] if "-" in what else list(samplers)
        if any(f not in samplers for f in fams):
            raise ValueError(f"unknown steps study '{what}'; choose steps, steps-ddpm, steps-ldm or steps-flow")
        out = runs / "demos-steps.json"
        old = json.loads(out.read_text()) if out.is_file() else {}
        rows = {f: r for f, r in old.get("rows", {}).items() if old.get("n") == n}
        for f in fams:
            rows[f] = steps_study(trained(f"{f}-seed0"), [5, 10, 20, 50], samplers[f], n)
        floor = floor_metrics(n)["fid_conjure_floor"]
        result = {"rows": rows, "fid_conjure_floor": floor, "n": n,
                  "plot": str(plot_steps(rows, floor, runs / "quality-vs-steps.png"))}
    elif what == "denoise":
        flow = runs / "flow-seed0" / "model" / "config.json"
        result = {"rows": denoising_errors(trained("ddpm-seed0"), trained("flow-seed0") if flow.is_file() else None,
                                           n=n), "n": n}
    elif what == "collapse":
        from conjure.lab.evaluate import generate, score_images
        result = {}
        for name in ("gan-seed0", "gan-unstable-seed0"):
            images, y, _ = generate(trained(name), n)
            s = score_images(images, y, n_ref=n, bootstrap=10)
            result[name] = {k: s[k] for k in ("fid_conjure", "precision", "recall", "class_accuracy",
                                              "classes_reached", "cluster_coverage", "cluster_coverage_per_class")}
        result["collapse_detected"] = detect_collapse(result["gan-unstable-seed0"], result["gan-seed0"])
        result["n"] = n
    else:
        raise ValueError(f"unknown demo '{what}'; choose vae, steps (steps-ddpm, steps-ldm, steps-flow), denoise or collapse")
    out.write_text(json.dumps(result, indent=1))
    return out


def detect_collapse(run: dict, reference: dict) -> dict:
    """Mode collapse = samples cover few of the real modes: fewer than 8 of the 10 classes reached, or under
    half of the per-class clusters, or recall under half the reference model's."""
    reasons = []
    if run["classes_reached"] < 8:
        reasons.append(f"only {run['classes_reached']} of 10 classes reached")
    if run["cluster_coverage"] < 0.5:
        reasons.append(f"cluster coverage {run['cluster_coverage']:.2f} < 0.5")
    if run["recall"] < 0.5 * reference["recall"]:
        reasons.append(f"recall {run['recall']:.3f} under half of the stable GAN's {reference['recall']:.3f}")
    return {"collapsed": bool(reasons), "reasons": reasons}
