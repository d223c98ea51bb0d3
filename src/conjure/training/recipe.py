"""Recipes: the YAML training configs under recipes/, read into one dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Recipe:
    """A latent-diffusion training recipe (kind: latent_diffusion)."""

    name: str
    kind: str = "latent_diffusion"
    sources: list[str] = field(default_factory=lambda: ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap"])
    image_size: int = 64                     # pixels of the base model
    vae: str = "models/conjure-tiny/vae"     # a trained VAE folder (its scaling_factor is used)
    unet_preset: str = "tiny"
    max_tokens: int = 16                     # caption tokens kept for cross-attention
    prediction_type: str = "v_prediction"
    images: int = 2_000_000                  # training budget in images seen
    batch: int = 128
    lr: float = 3e-4
    warmup_images: int = 20_000
    decay_images: int = 0                    # the last this many images of the budget: lr falls linearly ...
    final_lr_fraction: float = 0.1           # ... to this share of lr (0 images: constant lr after warm-up)
    weight_decay: float = 0.0
    prompt_dropout: float = 0.1              # share of captions replaced by "" (for classifier-free guidance)
    ema_half_life_images: float = 100_000
    sample_every_images: int = 50_000
    save_every_images: int = 25_000
    sample_prompts: str = "recipes/prompts/conjure-tiny.txt"
    mixed_precision: str = "bf16"
    seed: int = 0

    def lr_at(self, images_seen: int) -> float:
        """Learning rate for the step that takes images_seen to images_seen + batch: linear warm-up, constant,
        then a linear fall over the budget's last `decay_images` images. It depends on images seen only, so a
        run warm-started or resumed in another sitting continues the same schedule."""
        lr = self.lr * min(1.0, (images_seen + self.batch) / max(self.warmup_images, 1))
        if self.decay_images > 0:
            left = self.images - images_seen
            if left < self.decay_images:
                frac = max(left, 0) / self.decay_images
                lr *= self.final_lr_fraction + (1 - self.final_lr_fraction) * frac
        return lr

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"recipe file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown recipe keys in {path}: {', '.join(sorted(unknown))}")
        raw.setdefault("name", path.stem)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class VAERecipe:
    """A VAE training recipe (kind: vae)."""

    name: str
    kind: str = "vae"
    sources: list[str] = field(default_factory=lambda: ["noto", "twemoji", "mdi", "tabler", "lucide", "bootstrap"])
    channels: list[int] = field(default_factory=lambda: [16, 64, 128])
    steps: int = 1600
    batch: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 0

    load = classmethod(Recipe.load.__func__)
    to_dict = Recipe.to_dict


def load_any_recipe(path: str | Path, images: int | None = None):
    """Read a recipe of either kind; `images` overrides a diffusion recipe's budget."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recipe file not found: {path}")
    kind = (yaml.safe_load(path.read_text()) or {}).get("kind", "latent_diffusion")
    from conjure.evaluation.recipe import EVAL_RECIPES
    if kind in EVAL_RECIPES:   # the evaluation networks (feature classifier, CLIP)
        return EVAL_RECIPES[kind].load(path)
    if kind == "vae":
        return VAERecipe.load(path)
    if kind == "safety-prompt":   # the prompt classifier of the safety policy (trained on text, not images)
        from conjure.safety.train import load_recipe
        recipe = load_recipe(path)
        recipe.kind, recipe.path = kind, path
        return recipe
    if kind != "latent_diffusion":
        raise ValueError(f"unknown recipe kind '{kind}' in {path}; expected latent_diffusion, vae, safety-prompt, "
                         f"{' or '.join(EVAL_RECIPES)}")
    return Recipe.load(path, images=images)


def run_recipe(recipe, settings, resume: Path | None = None, max_minutes: float | None = None,
               export: Path | None = None, init_from: Path | None = None) -> Path:
    """Train in a new run directory (or continue `resume`) and optionally copy the result to `export`."""
    import shutil

    from conjure.training.loop import new_run_dir, train
    from conjure.training.vae import train_vae
    if recipe.kind == "safety-prompt":   # writes models/safety-prompt (its own held-out report included)
        from conjure.safety.train import main as train_safety
        from conjure.safety.classifier import MODEL_DIR
        train_safety([str(recipe.path)] + (["--out", str(export)] if export else []))
        return Path(export) if export else MODEL_DIR
    run_dir = Path(resume) if resume else new_run_dir(settings.runs_dir, recipe.name)
    if resume and not run_dir.is_dir():
        raise ValueError(f"cannot resume: {run_dir} is not a run directory")
    print(f"run directory: {run_dir}")
    if recipe.kind in ("feature_classifier", "clip"):
        from conjure.evaluation.train import train_eval_network
        result = train_eval_network(recipe, run_dir, max_minutes=max_minutes)
        if result is None:
            return run_dir
    elif recipe.kind == "vae":
        (run_dir / "config.json").write_text(__import__("json").dumps(recipe.to_dict(), indent=1))
        result = train_vae(run_dir, recipe.sources, channels=tuple(recipe.channels), steps=recipe.steps,
                           batch=recipe.batch, lr=recipe.lr, kl_weight=recipe.kl_weight, seed=recipe.seed,
                           max_minutes=max_minutes)
    else:
        result = train(recipe, run_dir, settings.home / "cache", max_minutes=max_minutes, init_from=init_from)
    if export:
        if Path(export).exists():
            shutil.rmtree(export)
        shutil.copytree(result, export)
        result = Path(export)
    return result
