"""conjure-tiny on one GPU in a single call: pack here, train there (see README.md beside this file).

`python recipes/conjure-tiny-gpu/run.py pack` (here, with the dataset built and the text encoder package
installed) writes .gpu/tiny/: the six sources' images (xz), the training captions with their MiniLM token ids,
and MiniLM's weights in fp16 with only the word-embedding rows those captions use. The whole package is about
90 MB and does not fit in what travels to the GPU machine.

`python3 recipes/conjure-tiny-gpu/run.py train SECONDS` (there) does the following:
- unpacks the data;
- computes the training cache (VAE latents, MiniLM token states) on the GPU, with the compact MiniLM in place of
  the package;
- times 60 s of training at the recipe's batch, to learn the machine's speed;
- sets the image budget so that training ends inside SECONDS, and writes the final recipe;
- trains that recipe from scratch, then puts the EMA U-Net (fp16), log and recipe in $OUT.
"""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PACK = Path(".gpu/tiny")
SOURCES = ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap"]
T0 = time.time()


def pack() -> None:
    from safetensors.torch import load_file, save_file

    from conjure.text.encoder import Tokenizer, model_path
    sys.path.insert(0, str(HERE.parent / "judge-v2"))
    import train_on_gpu as judge
    PACK.mkdir(parents=True, exist_ok=True)
    judge.pack(dst=PACK / "data", sources=SOURCES)
    cache_json = sorted(Path(os.environ.get("CONJURE_HOME", ".cache/conjure"), "cache").glob("train-cache-*.json"))
    captions = json.loads(cache_json[-1].read_text())["captions"]
    ids, mask = Tokenizer(model_path())(captions, 16)
    used = torch.unique(ids)                                        # the vocabulary rows these captions need
    compact = torch.searchsorted(used, ids)
    raw = load_file(str(model_path() / "model.safetensors"))
    raw["embeddings.word_embeddings.weight"] = raw["embeddings.word_embeddings.weight"][used]
    save_file({k: v.half().contiguous() for k, v in raw.items()
               if k.startswith(("embeddings.", "encoder.layer.")) and "position_ids" not in k},
              str(PACK / "minilm-compact-fp16.safetensors"))
    with lzma.open(PACK / "captions.json.xz", "wt") as f:
        json.dump({"captions": captions, "ids": compact.tolist(), "mask": mask.tolist()}, f)
    print(f"{len(captions)} captions, {len(used)} vocabulary rows")


class CompactEncoder:
    """TextEncoder's `encode` for the packed captions only: MiniLM from the compact fp16 weights, run in fp32."""

    def __init__(self, device: str | None = None):
        from safetensors.torch import load_file

        from conjure.text.minilm import DIM, MiniLM
        with lzma.open(PACK / "captions.json.xz", "rt") as f:
            packed = json.load(f)
        self.row = {c: i for i, c in enumerate(packed["captions"])}
        self.ids, self.mask = torch.tensor(packed["ids"]), torch.tensor(packed["mask"])
        weights = {k: v.float() for k, v in load_file(str(PACK / "minilm-compact-fp16.safetensors")).items()}
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = MiniLM(0, 6)
        model.embeddings["word_embeddings"] = torch.nn.Embedding(len(weights["embeddings.word_embeddings.weight"]),
                                                                 DIM)
        state = {k.replace("encoder.layer.", "layer."): v for k, v in weights.items()}
        model.load_state_dict(state)
        self.model = model.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def encode(self, prompts: list[str], max_tokens: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        if max_tokens != self.ids.shape[1]:
            raise ValueError(f"packed for {self.ids.shape[1]} tokens, asked for {max_tokens}")
        rows = torch.tensor([self.row[p] for p in prompts])
        ids, mask = self.ids[rows].to(self.device), self.mask[rows].to(self.device)
        return self.model(ids, mask).float().cpu(), mask.cpu()


def _recipe(base: Path, **changes):
    from conjure.training.recipe import Recipe
    r = Recipe.load(base)
    for k, v in changes.items():
        setattr(r, k, v)
    return r


def _write_recipe(r, path: Path, note: str) -> None:
    import yaml
    path.write_text(f"# {note}\n" + yaml.safe_dump(r.to_dict(), sort_keys=False))


def train_there(seconds: float) -> None:
    import conjure.training.cache as cache_mod
    from conjure.training.loop import train
    sys.path.insert(0, str(HERE.parent / "judge-v2"))
    import train_on_gpu as judge
    home = Path(os.environ.setdefault("CONJURE_HOME", "/tmp/conjure-home"))
    judge.unpack(PACK / "data", home / "data", sources=SOURCES)
    cache_mod.TextEncoder = CompactEncoder
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out = Path(os.environ.get("OUT", "/tmp/tiny-out"))
    out.mkdir(parents=True, exist_ok=True)
    base = HERE / "conjure-tiny-gpu.yaml"
    runs, cache_dir = home / "runs", home / "cache"

    # --- speed: 60 s of the recipe at its batch (the first call also builds the training cache)
    probe_dir = runs / "probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    train(_recipe(base, images=10**9), probe_dir, cache_dir, max_minutes=1.0, sample_grids=False)
    log = [json.loads(line) for line in (probe_dir / "log.jsonl").read_text().splitlines()]
    a, b = log[len(log) // 3], log[-1]                  # skip the warm-up third (compilation, allocator)
    speed = (b["images_seen"] - a["images_seen"]) / (b["elapsed_s"] - a["elapsed_s"])
    left = seconds - (time.time() - T0) - 45            # 45 s for the final save and packing
    r = _recipe(base)
    r.images = int(speed * left * 0.95) // r.batch * r.batch
    r.decay_images = int(r.images * 0.4) // r.batch * r.batch
    print(f"speed {speed:.0f} images/s; {left:.0f} s left -> budget {r.images} images", flush=True)
    _write_recipe(r, out / "conjure-tiny.yaml", f"conjure-tiny trained on one GPU; budget set from a measured "
                  f"{speed:.0f} images/s (recipes/conjure-tiny-gpu/run.py)")

    # --- the run
    run = runs / "conjure-tiny"
    run.mkdir(parents=True, exist_ok=True)
    train(r, run, cache_dir, max_minutes=left / 60, sample_grids=False)
    from safetensors.torch import load_file, save_file
    unet = run / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in load_file(str(unet)).items()}, str(unet))
    subprocess.run(["tar", "-cf", str(out / "run.tar"), "-C", str(run), "model/unet", "model/conjure.json",
                    "model/model_index.json", "model/scheduler", "log.jsonl", "config.json"], check=True)
    subprocess.run(["split", "-b", "15000000", str(out / "run.tar"), str(out / "run.tar.part-")], check=True)
    (out / "run.tar").unlink()
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    print(f"done: {last['images_seen']} images in {last['elapsed_s']} s, {time.time() - T0:.0f} s in all")


if __name__ == "__main__":
    if sys.argv[1] == "pack":
        pack()
    else:
        train_there(float(sys.argv[2]))
