"""`conjure evaluate MODEL`: generate a prompt suite's images and write a report folder (metrics.json,
report.md, samples.png) with every number beside its real-data floor.

Prompt suites are JSON-lines data files under conjure/evaluation/suites/ ({"prompt", "source", "labels",
"split", and "caption" where the prompt rewords a canonical caption}): the held-out suite holds canonical
captions of test-split items only (concepts never trained on); the in-vocabulary suite holds training concepts
under reworded captions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

SUITES_DIR = Path(__file__).parent / "suites"
MODEL_SOURCES = ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap"]


def read_suite(name: str) -> list[dict]:
    path = SUITES_DIR / f"{name}.jsonl"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.jsonl"))) or "none"
        raise ValueError(f"unknown prompt suite '{name}'; choose from: {known}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_heldout_suite(sources: list[str] = MODEL_SOURCES, per_source: int = 100, seed: int = 0,
                        path: Path | None = None) -> Path:
    """Draw `per_source` distinct canonical captions of test-split items per source into suites/heldout.jsonl."""
    from conjure.data import load_source
    rng = np.random.default_rng(seed)
    rows = []
    for s in sources:
        recs = load_source(s, "test").records
        first: dict[str, dict] = {}
        for r in recs:
            first.setdefault(r["captions"][0], r)
        caps = sorted(first)
        for c in sorted(rng.choice(caps, min(per_source, len(caps)), replace=False).tolist()):
            rows.append({"prompt": c, "source": s, "labels": first[c]["labels"], "split": "test"})
    path = path or SUITES_DIR / "heldout.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def draw_training_concepts(sources: list[str] = MODEL_SOURCES, per_source: int = 100, seed: int = 1) -> list[dict]:
    """`per_source` distinct canonical captions of training-split items per source ({"source", "caption"}):
    the concepts of the in-vocabulary suite, which a person then rewords (suites/invocab_rewordings.jsonl)."""
    from conjure.data import load_source
    rng = np.random.default_rng(seed)
    out = []
    for s in sources:
        caps = sorted({r["captions"][0] for r in load_source(s, "train").records})
        out += [{"source": s, "caption": c}
                for c in sorted(rng.choice(caps, min(per_source, len(caps)), replace=False).tolist())]
    return out


def write_invocab_suite(path: Path | None = None, rewordings: Path | None = None) -> Path:
    """suites/invocab.jsonl: training concepts under hand-reworded captions ("pizza slice" for "slice of
    pizza"), each row with its canonical caption and labels, so the model is asked for what it learned in words
    it did not see."""
    from conjure.data import load_source
    pairs = [json.loads(line) for line in (rewordings or SUITES_DIR / "invocab_rewordings.jsonl").read_text()
             .splitlines() if line.strip()]
    records = {}
    for s in sorted({p["source"] for p in pairs}):
        for r in load_source(s, "train").records:
            records.setdefault((s, r["captions"][0]), r)
    rows = []
    for p in pairs:
        rec = records.get((p["source"], p["caption"]))
        if rec is None:
            raise ValueError(f"'{p['caption']}' is not a training caption of {p['source']}")
        rows.append({"prompt": p["prompt"], "caption": p["caption"], "source": p["source"],
                     "labels": rec["labels"], "split": "train"})
    path = path or SUITES_DIR / "invocab.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def interleave(rows: list[dict], seed: int = 0) -> list[dict]:
    """Suite rows shuffled within each source, then taken round-robin across sources, so that the first n
    prompts cover every source evenly."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    queues = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(by_source.items())]
    return [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]


def generate(model: str, prompts: list[str], seed: int, steps: int | None, batch: int = 16,
             cache: Path | None = None, guidance: float | None = None,
             stats: dict | None = None) -> tuple[torch.Tensor, str]:
    """Images for prompts (image i uses seed + i) as uint8 (N, 3, 64, 64), and the model's hash: a model that
    declares 64 px is asked for it (its base output, the upsampler judged apart), others are resized. The guard
    (screening, watermark, C2PA) is left off: these images are measured, not delivered. `guidance`: the
    classifier-free guidance scale (default: the model's).

    With `cache` (a folder), the images are kept there under a key of the model's hash, prompts, seed, steps
    and any guidance other than the model's default, saved every few batches: a run that was stopped resumes,
    and measuring again does not regenerate. `stats` (a dict) receives how many images came from the cache."""
    import hashlib
    from conjure.data.build import resize_images
    from conjure.pipelines import load_pipeline
    from conjure.pipelines.product import Job
    from conjure.pipelines.request import GenerationRequest
    pipe = load_pipeline(model, responsible=False)
    model_hash = getattr(pipe, "model_hash", None) or pipe.components.model_hash
    spec = getattr(pipe, "spec", None)
    size = 64 if spec is not None and 64 in spec.sizes else None     # the base output, before any upsampler
    path = None
    out: list[np.ndarray] = []
    if cache is not None:
        parts = [model_hash, prompts, seed, steps, size]
        if guidance is not None and guidance != getattr(spec, "default_guidance", None):
            parts.append(float(guidance))     # the default keeps the key it always had
        key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]
        path = Path(cache) / f"{key}.npy"
        if path.is_file():
            out = list(np.load(path))
    if stats is not None:
        stats["from_cache"] = len(out)
    for i in range(len(out), len(prompts), batch):
        reqs = [GenerationRequest(prompt=p, seed=seed + i + j, steps=steps, size=size, guidance=guidance)
                for j, p in enumerate(prompts[i:i + batch])]
        for res in pipe.generate_batch(reqs, [Job() for _ in reqs]):
            if isinstance(res, Exception):
                raise res
            out.append(resize_images(np.asarray(res.images[0].convert("RGB"))[None], 64)[0])
        if path is not None and ((i // batch) % 8 == 7 or len(out) == len(prompts)):
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path.with_suffix(".part.npy"), np.stack(out))
            path.with_suffix(".part.npy").replace(path)      # whole file or the previous one, never half
    images = np.stack(out)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), model_hash


@torch.no_grad()
def vae_round_trip(model: str, images: torch.Tensor, batch: int = 100) -> torch.Tensor | None:
    """Real images (uint8 (N, 3, 64, 64)) encoded by the model's VAE (posterior mode) and decoded the way its
    generations are: what the model would deliver if its U-Net found every image's latent exactly. None for
    a model with no conjure VAE at a 64 px base (an added diffusers folder)."""
    from conjure.pipelines import load_pipeline
    pipe = load_pipeline(model, responsible=False)
    spec = getattr(pipe, "spec", None)
    if spec is None or spec.base_size != 64 or tuple(images.shape[1:]) != (3, 64, 64):
        return None
    sf = pipe.components.vae_config["scaling_factor"]
    out = []
    for b in images.split(batch):
        z = pipe.vae.encode(b.float() / 127.5 - 1.0).latent_dist.mode()
        out.append(((pipe.decode(z * sf).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(out)


def decoder_ceiling(model: str, net, refs, concept_images: torch.Tensor, concept_records: list[dict]) -> dict | None:
    """What the model's VAE alone costs: the floor images after a VAE round trip, measured against the same
    reference as the generated ones (FID, KID, class-prompt accuracy), and the judge on real images of the
    suite's own concepts, as they are and after the round trip. A U-Net that found every latent exactly
    would score these, so the generated numbers are read against them, not against the raw floor."""
    from conjure.evaluation.metrics import image_set_metrics
    both = vae_round_trip(model, torch.cat([refs.floor, concept_images]))       # one pipeline load for both sets
    if both is None:
        return None
    floor_rt, concepts_rt = both[:len(refs.floor)], both[len(refs.floor):]
    m = image_set_metrics(net, refs.reference, floor_rt)
    out = {"images": "floor images after a round trip through the model's VAE",
           "fid_conjure": m["fid_conjure"], "fid_conjure_ci95": m["ci95"]["fid_conjure"],
           "kid_conjure": m["kid_conjure"],
           "class_prompt_accuracy": class_prompt_accuracy(class_accuracy_by_source(net, floor_rt, refs.floor_records))}
    if len(concept_images):
        out["n_concept_images"] = len(concept_images)
        out["class_prompt_accuracy_concepts"] = class_prompt_accuracy(
            class_accuracy_by_source(net, concept_images, concept_records))
        out["class_prompt_accuracy_concepts_vae"] = class_prompt_accuracy(
            class_accuracy_by_source(net, concepts_rt, concept_records))
    return out


def caption_pool(clip, rows: list[dict]) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Per source: the suite's distinct prompts, sorted, and their CLIP text embeddings (M, E), computed once
    for every R@1 measured against them."""
    prompts: dict[str, set[str]] = {}
    for r in rows:
        prompts.setdefault(r["source"], set()).add(r["prompt"])
    return {s: (sorted(p), clip.embed_captions(sorted(p))) for s, p in prompts.items()}


def _clip_r1(clip, images: torch.Tensor, prompts: list[str], sources: list[str],
             pool: dict[str, tuple[list[str], torch.Tensor]], seed: int) -> dict:
    """Per source: R@1 of each image for its own prompt among 100 distinct captions of that source (its prompt
    plus 99 others drawn from `pool`, see caption_pool; ties count as misses)."""
    from conjure.evaluation.clip import embed_images, recall_at_k
    rng = np.random.default_rng(seed)
    img = embed_images(clip, images)
    out: dict[str, dict] = {}
    for s in sorted(set(sources)):
        caps, txt = pool[s]                                                 # (M,), (M, E)
        index = {c: j for j, c in enumerate(caps)}
        idx = [i for i, src in enumerate(sources) if src == s]
        hits = []
        for i in idx:
            own = index[prompts[i]]
            others = [j for j in range(len(caps)) if j != own]
            cand = [own] + rng.choice(others, min(99, len(others)), replace=False).tolist()
            hits.append(recall_at_k(img[i:i + 1] @ txt[cand].t(), torch.tensor([0]))["r1"])
        out[s] = {"r1": round(float(np.mean(hits)), 4), "n": len(idx), "n_captions": min(100, len(caps))}
    return out


# the classifier head that checks a class prompt of each source: the most specific class every prompt of the
# source carries (lucide and bootstrap carry no category, so their check is that the image reads as that icon set)
CLASS_HEADS = {"noto": "emoji_category", "twemoji": "emoji_category", "mdi": "mdi_category",
               "tabler": "tabler_category", "lucide": "source", "bootstrap": "source", "fashion_mnist": "fashion_class"}


def suite_rows(rows: list[dict], counts: dict[str, int], seed: int = 0) -> list[dict]:
    """counts[s] prompts of each source (its prompts shuffled, repeated with new seeds when it has fewer), in
    the interleaved order, so that any prefix covers every source."""
    rng = np.random.default_rng(seed)
    picked = []
    for s, k in sorted(counts.items()):
        mine = [r for r in rows if r["source"] == s]
        order = [mine[i] for i in rng.permutation(len(mine))]
        picked += [order[i % len(order)] for i in range(k)]
    return interleave(picked, seed)


def mean_r1(per_source: dict) -> float:
    """R@1 over all images of every source (each source weighted by its image count), from a report's
    per-source {"r1", "n"} entries."""
    n = sum(v["n"] for v in per_source.values())
    return round(sum(v["r1"] * v["n"] for v in per_source.values()) / n, 4) if n else float("nan")


def class_accuracy_by_source(net, images: torch.Tensor, records: list[dict]) -> dict[str, dict[str, float]]:
    """Per source: the accuracy of every classifier head that applies to its images."""
    from conjure.evaluation.data import label_tensor
    from conjure.evaluation.metrics import class_accuracy
    out = {}
    for s in sorted({r["source"] for r in records}):
        idx = [i for i, r in enumerate(records) if r["source"] == s]
        out[s] = class_accuracy(net, images[idx], label_tensor([records[i] for i in idx], net.config.heads))
    return out


@torch.no_grad()
def source_confusion(net, images: torch.Tensor, records: list[dict], batch: int = 500) -> dict[str, dict[str, float]]:
    """For each source whose prompts the `source` head checks (CLASS_HEADS): the share of its images the head
    assigns to each source, largest first. It shows where the misses go (a Lucide prompt drawn as a
    Tabler-looking outline icon is a miss, though no prompt names its icon set)."""
    names = net.config.heads.get("source")
    wanted = sorted({r["source"] for r in records if CLASS_HEADS.get(r["source"]) == "source"})
    if not names or not wanted:
        return {}
    idx = [i for i, r in enumerate(records) if r["source"] in wanted]
    preds = torch.cat([net.logits(net(images[idx][k:k + batch]))["source"].argmax(1)
                       for k in range(0, len(idx), batch)])
    out = {}
    for s in wanted:
        mine = preds[torch.tensor([records[i]["source"] == s for i in idx])]
        counts = torch.bincount(mine, minlength=len(names)).double() / max(len(mine), 1)
        out[s] = {names[j]: round(float(counts[j]), 4) for j in counts.argsort(descending=True).tolist()
                  if counts[j] > 0}
    return out


def class_prompt_accuracy(by_source: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per source, the accuracy of its class head (CLASS_HEADS)."""
    return {s: v[CLASS_HEADS[s]] for s, v in by_source.items() if CLASS_HEADS.get(s) in v}


def evaluate(model: str, suite: str, n: int, out_dir: Path, steps: int | None = None, seed: int = 0,
             images: torch.Tensor | None = None, threads: int = 1, guidance: float | None = None) -> dict:
    """Generate up to n images over the suite's prompts and measure them against real images with a floor.

    The per-source counts follow the real reference (conjure.evaluation.metrics.reference_pair), so that
    generated and real sets mix the sources alike. `images` (uint8 (N, 3, 64, 64), one per suite row in
    `suite_rows` order) measures images made elsewhere instead of generating; the report names `model` as
    given and its hash as "external". `threads`: torch and ONNX Runtime threads (1 by default: on a shared, loaded
    CPU one thread runs faster than two; on an idle one, more threads generate faster).
    `guidance`: the classifier-free guidance scale to generate with (default: the model's); it is recorded."""
    from conjure.data.show import save_contact_sheet
    from conjure.evaluation.data import label_tensor, load_image_set
    from conjure.evaluation.metrics import class_accuracy, image_set_metrics, load_feature_net, reference_pair
    from conjure.models.clip import ClipModel
    from conjure.config import BUILTIN_MODELS_DIR
    from conjure.pipelines.request import MAX_GUIDANCE
    if guidance is not None and not 0.0 <= guidance <= MAX_GUIDANCE:
        raise ValueError(f"guidance must be between 0 and {MAX_GUIDANCE}, got {guidance}")
    torch.set_num_threads(threads)
    all_rows = read_suite(suite)
    suite_sources = sorted({r["source"] for r in all_rows})
    refs = reference_pair(suite_sources, n, seed)
    rows = suite_rows(all_rows, refs.counts, seed)
    prompts, sources = [r["prompt"] for r in rows], [r["source"] for r in rows]
    # 1. generate (timed separately from the metrics)
    t0 = time.time()
    from conjure.config import get_settings
    gen_stats = {"from_cache": 0}
    if images is None:
        fake, model_hash = generate(model, prompts, seed, steps, cache=get_settings().home / "cache" / "evaluations",
                                    guidance=guidance, stats=gen_stats)
    else:
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, 64, 64) or len(images) != len(rows):
            raise ValueError(f"images must be uint8 ({len(rows)}, 3, 64, 64), one per suite row; got "
                             f"{images.dtype} {tuple(images.shape)}")
        fake, model_hash = images, "external"
    gen_seconds = time.time() - t0
    # 2. image-set metrics against the real reference, and the floor: other real images against the same
    t1 = time.time()
    net = load_feature_net()
    metrics = {"model": model, "model_hash": model_hash, "suite": suite, "n_samples": len(rows), "seed": seed,
               "threads": threads,
               "steps": steps, "guidance": guidance, "generation_seconds": round(gen_seconds, 1),
               "images_from_cache": gen_stats["from_cache"], "per_source": refs.counts,
               "reference": refs.reference_name, "floor_images": refs.floor_name}
    metrics["generated"] = image_set_metrics(net, refs.reference, fake)
    metrics["floor"] = image_set_metrics(net, refs.reference, refs.floor)
    # 3. class accuracy of generated images for the labels their prompts carry, beside real unseen images
    records = [{"source": s, "labels": r["labels"]} for s, r in zip(sources, rows)]
    metrics["class_accuracy"] = class_accuracy(net, fake, label_tensor(records, net.config.heads))
    metrics["class_accuracy_real"] = class_accuracy(net, refs.floor, label_tensor(refs.floor_records,
                                                                                   net.config.heads))
    metrics["class_accuracy_by_source"] = class_accuracy_by_source(net, fake, records)
    metrics["class_prompt_accuracy"] = class_prompt_accuracy(metrics["class_accuracy_by_source"])
    metrics["class_prompt_accuracy_real"] = class_prompt_accuracy(
        class_accuracy_by_source(net, refs.floor, refs.floor_records))
    metrics["source_confusion"] = {"generated": source_confusion(net, fake, records),
                                   "real": source_confusion(net, refs.floor, refs.floor_records)}
    # 4. CLIP R@1 among 100 distinct captions of the same source, generated and real images of the same
    #    concepts (the suite's split: test concepts for the held-out suite, training concepts in-vocabulary)
    clip = ClipModel.from_pretrained(BUILTIN_MODELS_DIR / "conjure-clip")
    pool = caption_pool(clip, all_rows)
    metrics["clip_r1_generated"] = _clip_r1(clip, fake, prompts, sources, pool, seed)
    split = all_rows[0].get("split", "test")
    real = load_image_set(suite_sources, split)
    by_caption = {}
    for i, r in enumerate(real.records):
        by_caption.setdefault((r["source"], r["captions"][0]), i)
    seen, have = set(), []
    for r in all_rows:                       # one real image per suite prompt
        key = (r["source"], r.get("caption", r["prompt"]))
        if key in by_caption and key not in seen:
            seen.add(key)
            have.append((by_caption[key], r))
    metrics["clip_r1_real"] = _clip_r1(clip, real.images[[i for i, _ in have]], [r["prompt"] for _, r in have],
                                       [r["source"] for _, r in have], pool, seed)
    metrics["clip_r1_real_split"] = split
    # 4b. the decoder's ceiling (models with a conjure VAE; images made elsewhere have none to measure)
    if images is None:
        metrics["decoder_ceiling"] = decoder_ceiling(
            model, net, refs, real.images[[i for i, _ in have]],
            [{"source": r["source"], "labels": r.get("labels", {})} for _, r in have])
    # 5. beside each target: what pure retrieval of training images achieves, and how much is memorised
    test = real.images if split == "test" else load_image_set(suite_sources, "test").images
    val = load_image_set(suite_sources, "validation").images
    metrics.update(_retrieval_and_memorisation(net, clip, fake, val, test, rows, pool, seed))
    metrics["metric_seconds"] = round(time.time() - t1, 1)
    metrics["evaluators"] = evaluator_hashes()
    # 6. the report folder
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    grid = fake[:32].permute(0, 2, 3, 1).numpy()
    save_contact_sheet(out_dir / "samples.png", list(grid), prompts[:32])
    (out_dir / "report.md").write_text(report_markdown(metrics))
    return metrics


def _retrieval_and_memorisation(net, clip, fake: torch.Tensor, val: torch.Tensor, test: torch.Tensor,
                                rows: list[dict], pool: dict[str, tuple[list[str], torch.Tensor]],
                                seed: int) -> dict:
    """The retrieval baseline: for each prompt, the training image of the suite's sources whose canonical
    caption is nearest (MiniLM pooled vectors, the generator's own text encoder), scored with the same class
    accuracy and CLIP R@1 as the generated images. The memorisation rate: in conjure-features space, the share
    of generated images nearer to a training image than to any test-split image; real validation images
    (neither trained on nor in the test split) measured the same way give the rate an unseen image has."""
    from conjure.config import get_settings
    from conjure.evaluation.baselines import memorisation_rate, nearest_captions
    from conjure.evaluation.clip import text_vectors
    from conjure.evaluation.data import label_tensor, load_image_set
    from conjure.evaluation.metrics import class_accuracy, features_of
    prompts, sources = [r["prompt"] for r in rows], [r["source"] for r in rows]
    train = load_image_set(sorted(set(sources)), "train")
    captions = [r["captions"][0] for r in train.records]
    near = nearest_captions(text_vectors(prompts), text_vectors(captions, get_settings().home / "cache")).tolist()
    retrieved = train.images[near]
    labels = label_tensor([{"source": s, "labels": r["labels"]} for s, r in zip(sources, rows)], net.config.heads)
    f_train = features_of(net, train.images, cache_dir=get_settings().home / "cache" / "features")
    f_test = features_of(net, test)
    return {
        "retrieval_baseline": {
            "text_vectors": "MiniLM pooled, canonical training captions",
            "n_train": len(train.records),
            "same_caption_share": round(sum(captions[j] == p for j, p in zip(near, prompts)) / len(prompts), 4),
            "examples": [[p, captions[j]] for p, j in list(zip(prompts, near))[:5]],
            "class_accuracy": class_accuracy(net, retrieved, labels),
            "clip_r1": _clip_r1(clip, retrieved, prompts, sources, pool, seed),
        },
        "memorisation": {
            "generated": memorisation_rate(features_of(net, fake), f_train, f_test),
            "real_validation": memorisation_rate(features_of(net, val), f_train, f_test),
            "features": "conjure-features, nearest neighbour by Euclidean distance",
        },
    }


def evaluator_hashes() -> dict[str, str]:
    """Short sha256 of the evaluation networks' weights: numbers compare only under the same hashes."""
    from conjure.config import BUILTIN_MODELS_DIR
    from conjure.training.cache import file_hash
    return {name: file_hash(BUILTIN_MODELS_DIR / name / "model.safetensors")[:16]
            for name in ("conjure-features", "conjure-clip")}


def _ceiling_markdown(m: dict) -> list[str]:
    c = m.get("decoder_ceiling")
    if not c:
        return []
    f, g = m["floor"], m["generated"]
    lines = ["", "## The decoder's ceiling", "",
             "Real images encoded by the model's VAE and decoded as its generations are: what it would deliver "
             "if its U-Net found every latent exactly. Generated numbers are read against these.", "",
             "| measure | real floor images | after a VAE round trip | generated |", "|---|---|---|---|",
             f"| fid_conjure | {f['fid_conjure']:.2f} | {c['fid_conjure']:.2f} | {g['fid_conjure']:.2f} |",
             f"| kid_conjure | {f['kid_conjure']:.3f} | {c['kid_conjure']:.3f} | {g['kid_conjure']:.3f} |"]
    real = m.get("class_prompt_accuracy_real", {})
    for s, v in c["class_prompt_accuracy"].items():
        lines.append(f"| class-prompt accuracy, {s} | {real.get(s, float('nan')):.3f} | {v:.3f} | "
                     f"{m.get('class_prompt_accuracy', {}).get(s, float('nan')):.3f} |")
    if c.get("class_prompt_accuracy_concepts"):
        split = {"test": "test", "train": "training"}.get(m.get("clip_r1_real_split", "test"), "real")
        lines += ["", f"The judge on one real {split} image of each of the suite's own concepts "
                      f"({c['n_concept_images']} images), as it is and after the round trip:", "",
                  "| source | real | after a VAE round trip | generated |", "|---|---|---|---|"]
        for s, v in c["class_prompt_accuracy_concepts"].items():
            lines.append(f"| {s} | {v:.3f} | {c['class_prompt_accuracy_concepts_vae'].get(s, float('nan')):.3f} | "
                         f"{m.get('class_prompt_accuracy', {}).get(s, float('nan')):.3f} |")
    return lines


def report_markdown(m: dict) -> str:
    keys = ["fid_conjure", "kid_conjure", "is_conjure", "precision_conjure", "recall_conjure"]
    g, f = m["generated"], m["floor"]
    ref, flo = m.get("reference", "test-split"), m.get("floor_images", "validation-split")
    lines = [f"# Evaluation of {m['model']} on the '{m['suite']}' suite", "",
             f"{m['n_samples']} generated images (seed {m['seed']}, steps {m['steps'] or 'model default'}, guidance "
             f"{'model default' if m.get('guidance') is None else m['guidance']}), measured "
             f"at 64x64 with conjure-features against {g['n_real']} {ref} images; the floor is "
             f"{f['n_fake']} {flo} images against the same {ref} images. Generation "
             f"{m['generation_seconds']} s, metrics {m['metric_seconds']} s. Metrics named `_conjure` use "
             "conjure's own features, not Inception-v3."
             + ("".join(f" {k}: `{v}`." for k, v in m["evaluators"].items()) if m.get("evaluators") else ""), ""]
    if m.get("per_source"):
        lines += ["Images per source (generated and real alike): "
                  + ", ".join(f"{s} {k}" for s, k in m["per_source"].items()) + ".", ""]
    if g["n_real"] < 2000:
        lines += [f"**Preview only:** n = {g['n_real']} is below 2,000 (and FID needs n well above the 256 feature "
                  "dimensions), so FID and KID are dominated by small-sample bias here; compare them only with the "
                  "floor at the same n.", ""]
    lines += ["| metric | generated | 95% CI | real floor | 95% CI |", "|---|---|---|---|---|"]
    for k in keys:
        lines.append(f"| {k} | {g[k]:.4g} | {g['ci95'].get(k, '')} | {f[k]:.4g} | {f['ci95'].get(k, '')} |")
    ret = m.get("retrieval_baseline")
    nan = float("nan")
    lines += ["", "## Class accuracy (classifier heads on the labels each prompt carries)", "",
              "| head | generated | real (floor images) |" + (" retrieval baseline |" if ret else ""),
              "|---|---|---|" + ("---|" if ret else "")]
    for h, v in m["class_accuracy"].items():
        lines.append(f"| {h} | {v:.3f} | {m['class_accuracy_real'].get(h, nan):.3f} |"
                     + (f" {ret['class_accuracy'].get(h, nan):.3f} |" if ret else ""))
    if m.get("class_prompt_accuracy"):
        real = m.get("class_prompt_accuracy_real", {})
        lines += ["", "## Class-prompt accuracy per source (issue 3 target: at least 0.80 for every source)", "",
                  "The head that checks each source's prompts: " + ", ".join(
                      f"{s}: {CLASS_HEADS[s]}" for s in m["class_prompt_accuracy"]) + ".", "",
                  "| source | generated | real (floor images) |", "|---|---|---|"]
        for s, v in m["class_prompt_accuracy"].items():
            lines.append(f"| {s} | {v:.3f} | {real.get(s, nan):.3f} |")
        conf = m.get("source_confusion") or {}
        if conf.get("generated"):
            lines += ["", "Where the `source` head puts the images of the sources it checks (share per predicted "
                          "source, generated / real): no prompt names its icon set, so a miss is often a "
                          "plausible icon in another set's style.", "",
                      "| source | generated | real |", "|---|---|---|"]
            for s, v in conf["generated"].items():
                fmt = lambda d: ", ".join(f"{k} {x:.2f}" for k, x in list(d.items())[:3])  # noqa: E731
                lines.append(f"| {s} | {fmt(v)} | {fmt(conf.get('real', {}).get(s, {}))} |")
    lines += _ceiling_markdown(m)
    real_name = {"test": "real test images", "train": "real training images"}.get(
        m.get("clip_r1_real_split", "test"), "real images")
    lines += ["", "## CLIP R@1 among 100 distinct captions of the same source (ties are misses)", "",
              f"| source | generated | {real_name} |" + (" retrieval baseline |" if ret else ""),
              "|---|---|---|" + ("---|" if ret else "")]
    for s, v in m["clip_r1_generated"].items():
        lines.append(f"| {s} | {v['r1']:.3f} (n={v['n']}) | {m['clip_r1_real'].get(s, {}).get('r1', nan):.3f} |"
                     + (f" {ret['clip_r1'].get(s, {}).get('r1', nan):.3f} |" if ret else ""))
    if ret:
        lines += ["", f"The retrieval baseline answers each prompt with the training image (of {ret['n_train']}) "
                  "whose canonical caption is nearest by MiniLM pooled vectors; "
                  f"{ret['same_caption_share']:.1%} of prompts found their own caption in training.", ""]
    lines += _memorisation_markdown(m.get("memorisation"))
    lines += ["", "![samples](samples.png)", ""]
    return "\n".join(lines)


def _memorisation_markdown(mem: dict | None) -> list[str]:
    if not mem:
        return []
    lines = ["", "## Memorisation (conjure-features nearest neighbours)", "",
             "Share of images whose nearest training image is nearer than their nearest test-split image. Real "
             "validation images, seen by neither, show the rate that the two reference sets' sizes give an "
             "unseen image; a generator near it is not copying, one near 1 is.", "",
             "| images | memorisation rate | near copies (d_train < d_test / 10) | median d_train / d_test | n |",
             "|---|---|---|---|---|"]
    for name in ("generated", "real_validation"):
        r = mem[name]
        lines.append(f"| {name.replace('_', ' ')} | {r['rate']:.3f} | {r['near_copy_rate']:.3f} | "
                     f"{r['median_ratio']:.3f} | {r['n']} |")
    r = mem["generated"]
    lines.append(f"\nReference sets: {r['n_train']} training images, {r['n_test']} test images.")
    return lines
