"""Recipes of the evaluation networks (kind: feature_classifier or clip), read from recipes/*.yaml."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from conjure.training.recipe import Recipe

ALL_SOURCES = ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap", "fashion_mnist"]


@dataclass
class FeatureRecipe:
    """The shared-trunk, many-head classifier whose features serve FID/KID/IS/precision-recall."""

    name: str
    kind: str = "feature_classifier"
    sources: list[str] = field(default_factory=lambda: list(ALL_SOURCES))
    heads: list[str] = field(default_factory=lambda: ["source", "emoji_category", "emoji_subcategory", "skin_tone",
                                                      "gender", "mdi_category", "tabler_category", "fashion_class"])
    preset: str = "small"
    fashion_per_epoch: int = 10_000          # Fashion-MNIST items drawn afresh each epoch (it has 57k)
    epochs: int = 3
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    max_shift: int = 3                       # augmentation: random translation in pixels
    save_every_steps: int = 100
    threads: int = 2
    seed: int = 0

    load = classmethod(Recipe.load.__func__)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ClipRecipe:
    """A small CLIP: CNN image tower, MLP text tower over MiniLM pooled vectors (optionally MiniLM's top layers
    fine-tuned in a second stage), InfoNCE loss."""

    name: str
    kind: str = "clip"
    sources: list[str] = field(default_factory=lambda: list(ALL_SOURCES))
    preset: str = "small"
    embed_dim: int = 256
    text_hidden: int = 512
    captions_per_item: int = 6               # a random one of the first k captions per step
    fashion_items: int = 3000                # Fashion-MNIST has ten captions' worth of concepts
    init_trunk_from: str = ""                # a conjure-features folder to warm-start the image trunk; "" = none
    freeze_trunk: bool = False               # keep the (warm-started) trunk fixed; train projection and text tower
    shift_copies: int = 2                    # frozen trunk: shifted copies of the training set featurised once
    match: str = "caption"                   # which pairs in a batch count as matches: "caption" (the same
                                             # caption) or "group" (also the same concept group: every skin tone
                                             # of an emoji, an icon's outline and filled forms; conjure-clip
                                             # before 2026-11-24, which then cannot tell them apart)
    epochs: int = 4
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    max_shift: int = 3
    save_every_steps: int = 50
    threads: int = 2
    seed: int = 0
    # second stage, with the image side frozen: fine-tune MiniLM's top `text_tune_layers` layers (0 = no stage)
    text_tune_layers: int = 0
    text_epochs: int = 6
    text_lr_layer: float = 5e-4
    text_lr_head: float = 3e-4

    load = classmethod(Recipe.load.__func__)

    def __post_init__(self) -> None:
        if self.match not in ("caption", "group"):
            raise ValueError(f"recipe key match must be 'caption' or 'group', not {self.match!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


EVAL_RECIPES = {"feature_classifier": FeatureRecipe, "clip": ClipRecipe}
