"""Train the conjure-features v2 candidates side by side on one GPU and pick one by the rule fixed beforehand.

Run on the lent GPU machine from the repo root (see README.md beside this file for the exact `device` call):
the dataset travels packed in .gpu/data (made here by `python recipes/judge-v2/train_on_gpu.py pack`), is
unpacked into $CONJURE_HOME/data, and every candidate recipe in this folder trains in its own process.

Selection rule (written before any candidate was trained): the highest mean *validation* accuracy over the
eight heads; a tie goes to the smaller network. The test split is reported, never used to choose. A candidate
that has not finished inside the time limit is out.

Writes to $OUT: candidates.json (every finished candidate's metrics), winner.tar (split in 15 MB parts when
larger) holding the winner's model folder, and logs.txt.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCES = ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap", "fashion_mnist"]
ORDER = ["small", "base", "wide"]          # network size, for ties


def pack(data: Path = Path(".cache/conjure/data"), dst: Path = Path(".gpu/data"),
         sources: list[str] = SOURCES) -> None:
    """Compress the built sources (xz); Fashion-MNIST, grey in three equal channels, travels as one."""
    for s in sources:
        (dst / s).mkdir(parents=True, exist_ok=True)
        a = np.load(data / s / "images.npy")
        grey = bool((a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all())
        with lzma.open(dst / s / "images.npy.xz", "wb", preset=6) as f:
            np.save(f, np.ascontiguousarray(a[..., 0] if grey else a))
        with lzma.open(dst / s / "items.jsonl.xz", "wb", preset=6) as f:
            f.write((data / s / "items.jsonl").read_bytes())
        shutil.copy(data / s / "meta.json", dst / s / "meta.json")


def unpack(src: Path, data: Path, sources: list[str] = SOURCES) -> None:
    for s in sources:
        (data / s).mkdir(parents=True, exist_ok=True)
        with lzma.open(src / s / "images.npy.xz") as f:
            a = np.load(f)
        if a.ndim == 3:                                   # one grey channel -> the three equal ones
            a = np.repeat(a[..., None], 3, axis=3)
        np.save(data / s / "images.npy", a)
        with lzma.open(src / s / "items.jsonl.xz") as f:
            (data / s / "items.jsonl").write_bytes(f.read())
        shutil.copy(src / s / "meta.json", data / s / "meta.json")


def mean_validation(metrics: dict) -> float:
    v = metrics["validation"]
    return sum(h["accuracy"] for h in v.values()) / len(v)


def select(finished: dict[str, dict]) -> str:
    """The rule above: max mean validation accuracy, ties to the smaller preset."""
    return max(finished, key=lambda n: (round(mean_validation(finished[n]), 4),
                                        -ORDER.index(finished[n]["preset"])))


def main(out: Path, max_minutes: float) -> None:
    home = Path(os.environ.setdefault("CONJURE_HOME", "/tmp/conjure-home"))
    t0 = time.time()
    unpack(Path(".gpu/data"), home / "data")
    print(f"unpacked in {time.time() - t0:.0f} s", flush=True)
    runs, procs = Path("/tmp/judge-runs"), {}
    for recipe in sorted(HERE.glob("conjure-features-*.yaml")):
        run = runs / recipe.stem
        run.mkdir(parents=True, exist_ok=True)
        code = ("import sys; from pathlib import Path; from conjure.evaluation.recipe import FeatureRecipe; "
                "from conjure.evaluation.train import train_eval_network; "
                f"train_eval_network(FeatureRecipe.load('{recipe}'), Path('{run}'), max_minutes={max_minutes})")
        procs[recipe.stem] = subprocess.Popen([sys.executable, "-c", code], stdout=open(run / "stdout.txt", "w"),
                                              stderr=subprocess.STDOUT)
    for name, p in procs.items():
        p.wait()
        print(f"{name}: exit {p.returncode} after {time.time() - t0:.0f} s", flush=True)
    finished = {}
    for name in procs:
        m = runs / name / "model" / "metrics.json"
        if m.is_file():
            cfg = json.loads((runs / name / "config.json").read_text())
            finished[name] = {**json.loads(m.read_text()), "preset": cfg["preset"], "epochs": cfg["epochs"]}
            finished[name]["mean_validation"] = round(mean_validation(finished[name]), 4)
    out.mkdir(parents=True, exist_ok=True)
    logs = []
    for name in procs:
        lines = (runs / name / "stdout.txt").read_text().splitlines()
        logs += [f"== {name}", *lines[:3], *lines[-6:]]
    (out / "logs.txt").write_text("\n".join(logs) + "\n")
    winner = select(finished) if finished else None
    (out / "candidates.json").write_text(json.dumps({"winner": winner, "rule": "max mean validation accuracy over "
                                                     "the heads; ties to the smaller preset",
                                                     "candidates": finished}, indent=1))
    print(json.dumps({n: (c["mean_validation"], c["train_seconds"]) for n, c in finished.items()}), "->", winner)
    if winner:
        tar = out / "winner.tar"
        subprocess.run(["tar", "-cf", str(tar), "-C", str(runs / winner), "model", "config.json", "log.jsonl"],
                       check=True)
        if tar.stat().st_size > 15_000_000:
            subprocess.run(["split", "-b", "15000000", str(tar), str(tar) + ".part-"], check=True)
            tar.unlink()


if __name__ == "__main__":
    if sys.argv[1:] == ["pack"]:
        pack()
    else:
        main(Path(os.environ.get("OUT", "/tmp/judge-out")), float(sys.argv[1]) if sys.argv[1:] else 7.0)
