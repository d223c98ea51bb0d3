"""conjure's evaluation classifier: a small CNN trunk shared by one linear head per label set.

Its penultimate features (B, D) play the part that Inception-v3's pool features play in FID,
KID, Inception Score and precision/recall; metric names say so (`fid_conjure`). The network
takes uint8 images (B, 3, H, W) like torchmetrics' Inception extractor, and resizes them to
64x64 itself, so it judges every model at the same resolution.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def save_folder(model: nn.Module, folder: Path, extra: dict | None = None) -> Path:
    """An evaluation network as a folder: model.safetensors + config.json (its config dataclass + `extra`)."""
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**asdict(model.config), **(extra or {})}, indent=1))
    return folder


def load_folder(cls, config_cls, folder: Path):
    """The inverse of save_folder; keys of config.json that the config does not know (the `extra`) are skipped."""
    from safetensors.torch import load_file
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    model = cls(config_cls(**{k: v for k, v in raw.items() if k in config_cls.__dataclass_fields__}))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


@dataclass
class FeatureNetConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])   # channels per stage (each halves H, W)
    num_features: int = 256                  # penultimate width D: the metric features
    image_size: int = 64                     # inputs are resized to this many pixels
    heads: dict[str, list[str]] = field(default_factory=dict)   # label set -> class names, one head each


FEATURE_PRESETS = {
    "tiny": dict(widths=[16, 32, 64, 128], num_features=128),
    "small": dict(widths=[32, 64, 128, 256], num_features=256),
    "base": dict(widths=[48, 96, 192, 384], num_features=384),
    "wide": dict(widths=[64, 128, 256, 512], num_features=512),
}


def conv_trunk(widths: list[int]) -> nn.Sequential:
    """(B, 3, 64, 64) in [-1, 1] -> (B, widths[-1], 4, 4): per stage a stride-2 conv, then (after the
    first stage, where it would cost the most for the least) a 3x3 conv."""
    layers: list[nn.Module] = []
    c_in = 3
    for i, c in enumerate(widths):
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        if i > 0:
            layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        c_in = c
    return nn.Sequential(*layers)


def init_conv_linear(module: nn.Module) -> None:
    """He (fan-out) init for every conv of `module`, truncated normal (std 0.02) and zero bias for every linear:
    the init of the conv trunks and their heads (the feature network and the CLIP image tower)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def to_model_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, size, size) in [-1, 1] (bilinear with antialias when resizing)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (B, 3, H, W), got {images.dtype}")
    x = images.float() / 127.5 - 1.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class FeatureNet(nn.Module):
    """uint8 images (B, 3, H, W) -> features (B, D); `logits` gives one (B, K_head) tensor per head."""

    def __init__(self, config: FeatureNetConfig):
        super().__init__()
        self.config = config
        self.trunk = conv_trunk(config.widths)
        self.embed = nn.Sequential(nn.Linear(config.widths[-1] * 2, config.num_features), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({name: nn.Linear(config.num_features, len(classes))
                                    for name, classes in config.heads.items()})
        self.init_weights()

    def init_weights(self) -> None:
        init_conv_linear(self)

    def features_from_float(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 64, 64) in [-1, 1] -> (B, D)."""
        h = self.trunk(x)                                                  # (B, C, 4, 4)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        return self.embed(pooled)                                          # (B, D)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_from_float(to_model_input(images, self.config.image_size))

    def logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(features) for name, head in self.heads.items()}

    # ---------------------------------------------------------------------------- folder format
    def save_pretrained(self, folder: Path, extra: dict | None = None) -> Path:
        return save_folder(self, folder, extra)

    @classmethod
    def from_pretrained(cls, folder: Path) -> "FeatureNet":
        return load_folder(cls, FeatureNetConfig, folder)
