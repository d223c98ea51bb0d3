"""One evaluation for every lab run: 2,000 samples (200 per class prompt), judged at 64x64 with conjure's
feature classifier: fid_conjure / kid_conjure / precision / recall beside the real-vs-real floor, class-prompt
accuracy, mode coverage, sampling time and network evaluations per image."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from conjure.config import BUILTIN_MODELS_DIR
from conjure.lab.data import CLASSES, load_split, text_for, to_metric_images, to_uint8
from conjure.lab.families import Family

N_EVAL = 2000
KMEANS_K = 10


# The lab's judge is pinned to conjure-features v1: every family in the committed lab table was measured with it,
# and a family measured under another judge would not be comparable with the rest. Moving the lab to v2 means
# re-evaluating every family (recipes/lab.sh) with LAB_JUDGE pointing at models/conjure-features.
LAB_JUDGE = BUILTIN_MODELS_DIR / "conjure-features-v1"


@lru_cache(maxsize=1)
def feature_net():
    from conjure.evaluation.metrics import load_feature_net
    return load_feature_net(LAB_JUDGE)


def _class_index_map() -> torch.Tensor:
    """Our class index -> the feature classifier's fashion_class head index."""
    head = feature_net().config.heads["fashion_class"]
    return torch.tensor([head.index(c) for c in CLASSES])


@lru_cache(maxsize=4)
def reference(split: str, n: int = N_EVAL, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n real images of a split as uint8 (n, 3, 64, 64) and their classes."""
    d = load_split(split, limit=n, seed=seed)
    return to_metric_images(to_uint8(d.x)), d.y


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 50) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii 2007): (N, D) -> centroids (k, D)."""
    g = torch.Generator().manual_seed(seed)
    c = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):
        d2 = torch.cdist(x, c).min(1).values.square()
        c = torch.cat([c, x[torch.multinomial(d2 / d2.sum(), 1, generator=g)]])
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        c = torch.stack([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
    return c


def _cache_dir() -> Path:
    """Reference numbers that depend only on the data and the frozen feature network, kept between runs
    under CONJURE_HOME, keyed by the feature network's file hash."""
    from conjure.config import get_settings
    d = get_settings().home / "cache" / "lab" / feature_net().weights_id      # load_feature_net hashed the weights
    d.mkdir(parents=True, exist_ok=True)
    return d


@lru_cache(maxsize=1)
def class_clusters() -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, k = 10 k-means centroids of the real test images' features and each cluster's share:
    (10, k, D) and (10, k)."""
    from safetensors.torch import load_file, save_file
    path = _cache_dir() / f"clusters-k{KMEANS_K}.safetensors"
    if path.is_file():
        t = load_file(str(path))
        return t["centroids"], t["shares"]
    cents, shares = _class_clusters()
    save_file({"centroids": cents.contiguous(), "shares": shares.contiguous()}, str(path))
    return cents, shares


def _class_clusters() -> tuple[torch.Tensor, torch.Tensor]:
    from conjure.evaluation.metrics import features_of
    d = load_split("test")
    feats = features_of(feature_net(), to_metric_images(to_uint8(d.x))).float()
    cents, shares = [], []
    for c in range(len(CLASSES)):
        f = feats[d.y == c]
        cen = kmeans(f, KMEANS_K, seed=c)
        cents.append(cen)
        shares.append(torch.bincount(torch.cdist(f, cen).argmin(1), minlength=KMEANS_K).float() / len(f))
    return torch.stack(cents), torch.stack(shares)


def mode_coverage(features: torch.Tensor, y: torch.Tensor, predicted: torch.Tensor) -> dict:
    """Classes reached (the classifier assigns at least 5% of all samples to the class: 10 means all), and
    the share of per-class real clusters (k = 10) that the samples prompted with that class reach, a cluster
    counting as reached when it gets at least a quarter of its real share."""
    cents, shares = class_clusters()
    reached = []
    for c in range(len(CLASSES)):
        f = features[y == c]
        got = torch.bincount(torch.cdist(f, cents[c]).argmin(1), minlength=KMEANS_K).float() / max(len(f), 1)
        reached.append(float((got >= 0.25 * shares[c]).float().mean()))
    counts = torch.bincount(predicted, minlength=len(CLASSES)).float() / len(predicted)
    return {"classes_reached": int((counts >= 0.05).sum()), "cluster_coverage": round(float(np.mean(reached)), 4),
            "cluster_coverage_per_class": [round(r, 3) for r in reached]}


def generate(family: Family, n: int = N_EVAL, seed: int = 0, steps: int | None = None, sampler: str | None = None,
             guidance: float = 1.0, batch: int = 250) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """n samples, n / 10 per class prompt ("a photo of a ..."), in a fixed seeded order; returns
    (images (n, 1, 28, 28), intended classes (n,), timing)."""
    y = torch.arange(n) % len(CLASSES)
    gen = torch.Generator().manual_seed(seed)
    out, nfe, t0 = [], 0, time.perf_counter()
    for i in range(0, n, batch):
        x, nfe = family.sample(text_for(y[i:i + batch], prompt_only=True), gen, steps=steps, sampler=sampler,
                               guidance=guidance)
        out.append(x)
    seconds = time.perf_counter() - t0
    return torch.cat(out), y, {"sample_ms": round(1000 * seconds / n, 3), "nfe": nfe, "sample_seconds": round(seconds, 1)}


def sampling_flops(family: Family, steps: int | None = None, sampler: str | None = None) -> float:
    """FLOPs to sample one image (a batch of 4, counted by FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        family.sample(text_for(torch.arange(4), prompt_only=True), torch.Generator().manual_seed(0), steps=steps,
                      sampler=sampler)
    return counter.get_total_flops() / 4


@lru_cache(maxsize=1)
def floor_metrics(n: int = N_EVAL) -> dict:
    """Real-vs-real: validation split against test split at equal n, through the same pipeline."""
    from conjure.evaluation.metrics import image_set_metrics
    path = _cache_dir() / f"floor-n{n}.json"
    if path.is_file():
        return json.loads(path.read_text())
    real, _ = reference("test", n)
    val, _ = reference("validation", n)
    m = image_set_metrics(feature_net(), real, val, is_head="fashion_class", bootstrap=20)
    out = {"fid_conjure_floor": m["fid_conjure"], "kid_conjure_floor": m["kid_conjure"],
           "precision_floor": m["precision_conjure"], "recall_floor": m["recall_conjure"]}
    path.write_text(json.dumps(out))
    return out


def sharpness(images28: torch.Tensor) -> float:
    """Mean absolute Laplacian of (N, 1, 28, 28) images in [-1, 1]: edge energy, which blur lowers."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return round(float(torch.nn.functional.conv2d(images28.clamp(-1, 1), k).abs().mean()), 4)


@lru_cache(maxsize=4)
def real_sharpness(n: int) -> float:
    """Sharpness of n real test images: computed once per process, not once per scored set."""
    return sharpness(load_split("test", limit=n).x)


def score_images(images28: torch.Tensor, y: torch.Tensor, n_ref: int = N_EVAL, bootstrap: int = 20) -> dict:
    """Every image-set number for generated images (n, 1, 28, 28) prompted with classes y."""
    from conjure.evaluation.metrics import features_of, image_set_metrics
    net = feature_net()
    fake = to_metric_images(to_uint8(images28))
    real, _ = reference("test", n_ref)
    m = image_set_metrics(net, real, fake, is_head="fashion_class", bootstrap=bootstrap)
    feats = features_of(net, fake).float()
    with torch.no_grad():
        pred = net.heads["fashion_class"](feats).argmax(1)
    accuracy = float((pred == _class_index_map()[y]).float().mean())
    inverse = torch.argsort(_class_index_map())
    return {"fid_conjure": m["fid_conjure"], "fid_conjure_ci95": m["ci95"]["fid_conjure"],
            "kid_conjure": m["kid_conjure"], "precision": m["precision_conjure"], "recall": m["recall_conjure"],
            "is_conjure": m["is_conjure"], "class_accuracy": round(accuracy, 4),
            **mode_coverage(feats, y, inverse[pred]), "sharpness": sharpness(images28),
            "sharpness_real": real_sharpness(n_ref), "n_samples": len(y), "n_real": n_ref}


def real_class_accuracy(n: int = N_EVAL) -> float:
    """The classifier's accuracy on real test images: the ceiling a generator's class accuracy is read against."""
    from conjure.evaluation.metrics import features_of
    real, y = reference("test", n)
    with torch.no_grad():
        pred = feature_net().heads["fashion_class"](features_of(feature_net(), real).float()).argmax(1)
    return round(float((pred == _class_index_map()[y]).float().mean()), 4)


def sample_grid(images28: torch.Tensor, y: torch.Tensor, path: Path, per_class: int = 10) -> Path:
    """A grid PNG: one row per class, `per_class` samples each, class names on the left."""
    from PIL import Image, ImageDraw
    label_w, s = 90, 28 * 2
    sheet = Image.new("L", (label_w + per_class * s, len(CLASSES) * s), 255)
    draw = ImageDraw.Draw(sheet)
    g = to_uint8(images28)[..., 0]
    for c, name in enumerate(CLASSES):
        idx = (y == c).nonzero().flatten()[:per_class]
        draw.text((4, c * s + s // 2 - 6), name, fill=0)
        for j, i in enumerate(idx.tolist()):
            sheet.paste(Image.fromarray(g[i]).resize((s, s), Image.NEAREST), (label_w + j * s, c * s))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def result_tag(n: int = N_EVAL, steps: int | None = None, sampler: str | None = None) -> str:
    """'' for the standard evaluation (the family's sampler and steps, N_EVAL samples); otherwise a tag such as
    'ddpm1000-n500', so that a side evaluation is written beside metrics.json instead of over it."""
    if n == N_EVAL and steps is None and sampler is None:
        return ""
    return f"{sampler or 'default'}{steps or ''}-n{n}"


def _keep_earlier(run: Path, suffix: str, images_seen: int) -> None:
    """A run extended to a larger budget keeps its earlier evaluation as metrics.atN.json (and its samples),
    so the report can show quality along training."""
    old = run / f"metrics{suffix}.json"
    if not old.is_file():
        return
    seen = json.loads(old.read_text()).get("images_seen")
    if seen is not None and seen != images_seen:
        old.replace(run / f"metrics{suffix}.at{seen}.json")
        if (run / f"samples{suffix}.png").is_file():
            (run / f"samples{suffix}.png").replace(run / f"samples{suffix}.at{seen}.png")


def evaluate_run(model_dir: Path, n: int = N_EVAL, seed: int = 0, steps: int | None = None,
                 sampler: str | None = None) -> dict:
    """Sample and score one trained run; writes metrics.json and samples.png next to its model folder (for a
    non-standard sampler, step count or n: metrics.TAG.json and samples.TAG.png, see result_tag)."""
    from conjure.lab.train import load_trained
    model_dir = Path(model_dir)
    family, meta = load_trained(model_dir)
    images, y, timing = generate(family, n, seed, steps, sampler)
    result = {"family": meta["family"], "seed": meta["seed"], "images_seen": meta["images"],
              "stage_images": meta["stage_images"], "train_seconds": meta["train_seconds"],
              "train_flops": meta["train_flops"], "parameters": meta["parameters"],
              "sampling_params": meta["parameters"][family.sampling_net_name],
              "sampler": sampler, "steps": steps or family.spec.steps,
              **timing, "sample_flops": sampling_flops(family, steps, sampler),
              **score_images(images, y, n_ref=n), **floor_metrics(n), "class_accuracy_real": real_class_accuracy(n),
              "eval_seed": seed, "device": "cpu", "torch_threads": torch.get_num_threads()}
    run, tag = model_dir.parent, result_tag(n, steps, sampler)
    result["tag"] = tag
    suffix = f".{tag}" if tag else ""
    _keep_earlier(run, suffix, result["images_seen"])
    sample_grid(images, y, run / f"samples{suffix}.png")
    (run / f"metrics{suffix}.json").write_text(json.dumps(result, indent=1))
    return result
