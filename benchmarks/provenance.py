"""Provenance measured: watermark false positives and robustness, C2PA validity and tamper detection,
audit-log tamper detection, and the time that stamping adds per 256x256 image.

Merges its keys into benchmarks/results/safety.json (other keys in that file are left as they are) and
writes benchmarks/results/provenance.md.

    CONJURE_HOME=.cache/conjure python benchmarks/provenance.py [--generated 200] [--unmarked-data 1000]

Unmarked images: dataset images from the cache (upsampled 64 -> 256, bicubic) and the built-in model's
outputs before they are watermarked. Marked images: the same outputs, stamped.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPTS = ["red apple", "heart icon", "smiling face", "blue car", "house", "star", "cat", "tree", "sun", "flower",
           "rocket", "fish", "dog", "pizza", "moon", "bell", "umbrella", "book", "guitar", "camera", "clock",
           "leaf", "rainbow", "snowman", "cake"]
SOURCES = ["noto", "twemoji", "mdi", "tabler", "bootstrap", "lucide"]


def generate(count: int, steps: int) -> tuple[list[Image.Image], list[dict], float]:
    """`count` outputs of conjure-tiny (4 per prompt), their parameters, and seconds per image."""
    from conjure.pipelines import load_pipeline
    from conjure.pipelines.request import GenerationRequest
    pipe = load_pipeline("conjure-tiny")
    images, params = [], []
    t0 = time.perf_counter()
    i = 0
    while len(images) < count:
        prompt = PROMPTS[i % len(PROMPTS)]
        req = pipe.check(GenerationRequest(prompt, n=min(4, count - len(images)), seed=1000 + 10 * i, steps=steps))
        result = pipe(req)
        for image, seed in zip(result.images, result.seeds):
            images.append(image)
            params.append({"prompt": prompt, "seed": seed, "model": result.model, "model_hash": result.model_hash,
                           "params": {k: v for k, v in req.params().items() if k not in ("prompt", "negative_prompt",
                                                                                        "n", "seed", "strength")}})
        i += 1
    return images, params, (time.perf_counter() - t0) / len(images)


def dataset_images(count: int) -> list[Image.Image]:
    from conjure.data import load_source
    pool = []
    for source in SOURCES:
        try:
            d = load_source(source)
        except FileNotFoundError:
            continue
        pool += [(source, k) for k in range(len(d))]
        globals().setdefault("_data", {})[source] = d
    if not pool:
        raise SystemExit("no dataset cache: run `conjure data build` (with CONJURE_HOME set) first")
    picks = random.Random(0).sample(pool, min(count, len(pool)))
    return [Image.fromarray(np.asarray(_data[s].images[k])).resize((256, 256), Image.BICUBIC) for s, k in picks]


def jpeg75(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=75)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def resized(image: Image.Image) -> Image.Image:
    return image.resize((192, 192), Image.BICUBIC).resize((256, 256), Image.BICUBIC)


def edit_one_pixel_byte(png: bytes, rng: random.Random) -> bytes:
    """Flip one bit of one byte inside the first IDAT chunk's data (the compressed pixels)."""
    start = png.find(b"IDAT") + 4
    length = int.from_bytes(png[start - 8:start - 4], "big")
    edited = bytearray(png)
    edited[start + rng.randrange(length)] ^= 1 << rng.randrange(8)
    return bytes(edited)


def measure_outputs(images, params, anchors: str) -> dict:
    from conjure.provenance import audit, stamp, watermark
    from conjure.provenance.credentials import read_credentials
    from conjure.provenance.record import GenerationRecord
    url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    rng = random.Random(0)
    out = {k: [] for k in ("lossless", "jpeg75", "resize", "score_lossless", "score_jpeg75", "score_resize",
                           "c2pa_valid", "c2pa_trusted", "tamper", "stamp_ms", "audit_ms", "psnr")}
    for image, p in zip(images, params):
        rec = GenerationRecord(p["prompt"], p["model"], p["model_hash"], p["seed"], p["params"])
        stamped = stamp(image, rec)
        t = time.perf_counter()
        audit.append(rec, stamped.sha256, stamped.manifest_id, url=url)
        out["audit_ms"].append(1000 * (time.perf_counter() - t))
        out["stamp_ms"].append(1000 * stamped.timings["total"])
        marked = Image.open(io.BytesIO(stamped.png)).convert("RGB")
        diff = np.asarray(marked, np.float64) - np.asarray(image.convert("RGB"), np.float64)
        out["psnr"].append(10 * np.log10(255**2 / max(np.mean(diff**2), 1e-12)))
        for name, f in (("lossless", lambda x: x), ("jpeg75", jpeg75), ("resize", resized)):
            r = watermark.detect(f(marked))
            out[name].append(r.found and r.watermark_id == rec.watermark_id)
            out[f"score_{name}"].append(r.score)
        out["c2pa_valid"].append(read_credentials(stamped.png, anchors="").state == "valid")
        out["c2pa_trusted"].append(read_credentials(stamped.png, anchors=anchors).state == "trusted")
        out["tamper"].append(read_credentials(edit_one_pixel_byte(stamped.png, rng), anchors="").state == "invalid")
    out["chain_ok"] = audit.verify(url).ok
    return out


def measure_unmarked(images) -> dict:
    from conjure.provenance import watermark
    results = [watermark.detect(im) for im in images]
    return {"detections": sum(r.found for r in results), "decoded": sum(r.watermark_id is not None for r in results),
            "max_score": max(r.score for r in results), "count": len(results)}


def _tamper(url: str, kind: str, rng: random.Random, n: int) -> None:
    from sqlalchemy import text

    from conjure.db import get_engine
    with get_engine(url).begin() as conn:
        if kind == "edit":
            column, value = rng.choice([("seed", "seed + 1"), ("model_hash", "'x'"), ("prompt", "'edited'"),
                                        ("params", "'{\"steps\": 1}'"), ("output_sha256", "'" + "0" * 64 + "'"),
                                        ("verdicts", "'[{\"x\": 1}]'"), ("watermark_id", "watermark_id + 1"),
                                        ("entry_hash", "'" + "1" * 64 + "'")])
            seq = rng.randint(1, n)
            before = conn.execute(text(f"SELECT {column} FROM audit_entries WHERE seq = {seq}")).scalar()
            conn.execute(text(f"UPDATE audit_entries SET {column} = {value} WHERE seq = {seq}"))
            after = conn.execute(text(f"SELECT {column} FROM audit_entries WHERE seq = {seq}")).scalar()
            assert before != after, f"the edit of {column} changed nothing"   # a no-op is no tampering
        elif kind == "delete":
            conn.execute(text(f"DELETE FROM audit_entries WHERE seq = {rng.randint(1, n - 1)}"))
        elif kind == "reorder":
            a, b = rng.sample(range(1, n + 1), 2)
            for src, dst in ((a, -1), (b, a), (-1, b)):
                conn.execute(text(f"UPDATE audit_entries SET seq = {dst} WHERE seq = {src}"))
        else:   # truncate the last 1..3 entries
            conn.execute(text(f"DELETE FROM audit_entries WHERE seq > {n - rng.randint(1, 3)}"))


def measure_audit(trials_per_kind: int, n: int = 12) -> dict:
    from conjure.db import reset_engines
    from conjure.provenance import audit
    from conjure.provenance.record import GenerationRecord, sha256_hex
    rng = random.Random(0)
    detected = {k: 0 for k in ("edit", "delete", "reorder", "truncate")}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in detected:
            for t in range(trials_per_kind):
                url = f"sqlite:///{tmp}/{kind}-{t}.db"
                for i in range(n):
                    audit.append(GenerationRecord(f"prompt {i}", "m", "h", i), sha256_hex(f"{t}-{i}"), url=url)
                assert audit.verify(url).ok
                _tamper(url, kind, rng, n)
                detected[kind] += not audit.verify(url).ok
        reset_engines()
    return {"per_kind": {k: v / trials_per_kind for k, v in detected.items()},
            "rate": sum(detected.values()) / (4 * trials_per_kind), "trials": 4 * trials_per_kind}


def merge_json(path: Path, values: dict) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(values)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generated", type=int, default=200, help="outputs of conjure-tiny to stamp and test")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--unmarked-data", type=int, default=1000, help="dataset images used as unmarked images")
    ap.add_argument("--audit-trials", type=int, default=25, help="tampering trials per kind")
    ap.add_argument("--audit-only", action="store_true", help="re-measure the audit log only, keep the rest")
    args = ap.parse_args()
    if args.audit_only:
        return audit_only(args.audit_trials)
    from conjure.config import get_settings, offline_environment
    from conjure.provenance import watermark
    from conjure.provenance.keys import make_dev_ca
    offline_environment()
    anchors = (make_dev_ca(get_settings().home / "keys") / "ca.pem").read_text()

    images, params, gen_s = generate(args.generated, args.steps)
    print(f"generated {len(images)} images, {gen_s:.2f} s each", file=sys.stderr)
    unmarked = measure_unmarked(dataset_images(args.unmarked_data) + images)
    print(f"unmarked: {unmarked}", file=sys.stderr)
    marked = measure_outputs(images, params, anchors)
    audit_res = measure_audit(args.audit_trials)
    n = len(images)
    rate = lambda key: sum(marked[key]) / n   # noqa: E731
    values = {
        "watermark_false_positive": unmarked["detections"] / unmarked["count"],
        "watermark_lossless": rate("lossless"), "watermark_jpeg75": rate("jpeg75"), "watermark_resize": rate("resize"),
        "c2pa_valid_rate": rate("c2pa_valid"), "c2pa_tamper_detect_rate": rate("tamper"),
        "audit_tamper_detect_rate": audit_res["rate"],
        "provenance_ms_median": statistics.median(marked["stamp_ms"]),
        "provenance_details": {
            "unmarked_images": unmarked["count"], "unmarked_dataset": unmarked["count"] - n, "unmarked_model": n,
            "unmarked_decoded": unmarked["decoded"], "unmarked_max_score": unmarked["max_score"],
            "threshold": watermark.THRESHOLD, "generated": n, "steps": args.steps, "seconds_per_generation": gen_s,
            "min_score": {k: min(marked[f"score_{k}"]) for k in ("lossless", "jpeg75", "resize")},
            "c2pa_trusted_rate_with_dev_ca_anchor": rate("c2pa_trusted"),
            "audit_append_ms_median": statistics.median(marked["audit_ms"]),
            "stamp_plus_audit_ms_median": statistics.median(np.add(marked["stamp_ms"], marked["audit_ms"])),
            "psnr_db_median": statistics.median(marked["psnr"]), "psnr_db_min": min(marked["psnr"]),
            "audit_per_kind": audit_res["per_kind"], "audit_trials": audit_res["trials"],
            "audit_chain_of_stamped_outputs_ok": marked["chain_ok"], "cpu_count": os.cpu_count()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    merge_json(RESULTS / "safety.json", values)
    (RESULTS / "provenance.md").write_text(markdown(values))
    print(markdown(values))


def audit_only(trials_per_kind: int) -> None:
    path = RESULTS / "safety.json"
    if not path.is_file() or "provenance_details" not in json.loads(path.read_text()):
        raise SystemExit("--audit-only needs a full run's results in benchmarks/results/safety.json first")
    values = json.loads(path.read_text())
    res = measure_audit(trials_per_kind)
    values["audit_tamper_detect_rate"] = res["rate"]
    values["provenance_details"].update(audit_per_kind=res["per_kind"], audit_trials=res["trials"])
    merge_json(path, {k: values[k] for k in ("audit_tamper_detect_rate", "provenance_details")})
    (RESULTS / "provenance.md").write_text(markdown(values))
    print(markdown(values))


def markdown(v: dict) -> str:
    d = v["provenance_details"]
    score = d["min_score"]
    rows = [("watermark_false_positive", f"{v['watermark_false_positive']:.4f}", "<= 0.01",
             f"{d['unmarked_images']} unmarked images ({d['unmarked_dataset']} dataset, {d['unmarked_model']} model "
             f"outputs); {d['unmarked_decoded']} decoded at all; max score {d['unmarked_max_score']:.3f}"),
            ("watermark_lossless", f"{v['watermark_lossless']:.3f}", "1.0", f"min score {score['lossless']:.3f}"),
            ("watermark_jpeg75", f"{v['watermark_jpeg75']:.3f}", ">= 0.95", f"min score {score['jpeg75']:.3f}"),
            ("watermark_resize", f"{v['watermark_resize']:.3f}", ">= 0.90",
             f"256 -> 192 -> 256 bicubic; min score {score['resize']:.3f}"),
            ("c2pa_valid_rate", f"{v['c2pa_valid_rate']:.3f}", "1.0",
             f"trusted with the dev CA as anchor: {d['c2pa_trusted_rate_with_dev_ca_anchor']:.3f}"),
            ("c2pa_tamper_detect_rate", f"{v['c2pa_tamper_detect_rate']:.3f}", "1.0", "one random bit of IDAT data"),
            ("audit_tamper_detect_rate", f"{v['audit_tamper_detect_rate']:.3f}", "1.0",
             f"{d['audit_trials']} trials: " + ", ".join(f"{k} {r:.2f}" for k, r in d["audit_per_kind"].items())),
            ("provenance_ms_median", f"{v['provenance_ms_median']:.1f}", "well under 300",
             f"watermark + PNG + C2PA sign; + audit append: {d['stamp_plus_audit_ms_median']:.1f} ms")]
    lines = ["# Provenance", "",
             f"{d['generated']} outputs of conjure-tiny ({d['steps']} steps, "
             f"{d['seconds_per_generation']:.2f} s each on a shared, loaded machine), "
             f"watermark threshold {d['threshold']}, PSNR of the watermark median {d['psnr_db_median']:.1f} dB "
             f"(min {d['psnr_db_min']:.1f}); {d['cpu_count']} CPU cores. "
             "Reproduce: `CONJURE_HOME=.cache/conjure .venv/bin/python benchmarks/provenance.py`.", "",
             "| metric | value | target | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
