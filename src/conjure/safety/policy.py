"""The content policy: a versioned YAML file (a default ships in the package; the `policy` setting,
environment variable CONJURE_POLICY, overrides it).

A policy names the prohibited categories with a classifier threshold and an action each, the
safety negative prompt, and the image checks' thresholds. Loading validates every field, so a
bad file fails with a ValueError that names the field, not later in the middle of a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")
POLICY_ENV = "CONJURE_POLICY"

CATEGORIES = ("sexual", "sexual_minors", "violence", "hate", "self_harm", "weapons_illegal",
              "real_people", "deepfake")
ACTIONS = ("block", "blur", "flag")
ACTION_RANK = {"allow": 0, "flag": 1, "blur": 2, "block": 3}   # the stricter action wins


@dataclass(frozen=True)
class CategoryRule:
    name: str
    description: str
    threshold: float           # classifier probability at or above which the category fires
    combine_threshold: float   # lower probability that fires together with a weak rule term
    action: str                # block | blur | flag
    evidence_cosine: float = 0.0   # a classifier-only verdict also needs a training prompt of the category
                                   # within this MiniLM cosine (0 = no such check)


@dataclass(frozen=True)
class ImagePolicy:
    nsfw_blur_threshold: float = 0.6
    nsfw_block_threshold: float = 0.9
    face_action: str = "flag"
    face_min_size: int = 24
    ocr_enabled: str = "auto"      # auto | true | false
    ocr_action: str = "block"
    blur_radius: float = 0.08      # share of the image side


@dataclass(frozen=True)
class Policy:
    version: str
    name: str
    allowed_use_cases: tuple[str, ...]
    categories: dict[str, CategoryRule]
    safety_negative_prompt: str
    image: ImagePolicy = field(default_factory=ImagePolicy)
    source: str = ""               # the file it was read from

    def negative_prompt(self, user_negative: str = "") -> str:
        """The user's negative prompt with the safety negative prompt appended."""
        user_negative = (user_negative or "").strip().rstrip(",")
        if not self.safety_negative_prompt:
            return user_negative
        return f"{user_negative}, {self.safety_negative_prompt}" if user_negative else self.safety_negative_prompt


def _number(d: dict, key: str, where: str, default=None, lo: float = 0.0, hi: float = 1.0) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"policy: {where}.{key} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _action(value, where: str, allowed=ACTIONS) -> str:
    if value not in allowed:
        raise ValueError(f"policy: {where} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _category(name: str, d) -> CategoryRule:
    where = f"categories.{name}"
    if not isinstance(d, dict):
        raise ValueError(f"policy: {where} must be a mapping with threshold and action")
    threshold = _number(d, "threshold", where)
    combine = _number(d, "combine_threshold", where, default=threshold)
    action = _action(d.get("action"), f"{where}.action")
    if name == "sexual_minors" and action != "block":
        raise ValueError("policy: categories.sexual_minors.action must be block (it is always blocked)")
    evidence = _number(d, "evidence_cosine", where, default=0.0)
    return CategoryRule(name, str(d.get("description", "")), threshold, min(combine, threshold), action, evidence)


def _image(d) -> ImagePolicy:
    if not isinstance(d, dict):
        raise ValueError("policy: image must be a mapping")
    nsfw, faces, ocr = d.get("nsfw", {}), d.get("faces", {}), d.get("ocr", {})
    ocr_enabled = str(ocr.get("enabled", "auto")).lower()
    if ocr_enabled not in ("auto", "true", "false"):
        raise ValueError(f"policy: image.ocr.enabled must be auto, true or false, got {ocr_enabled!r}")
    blur = _number(nsfw, "blur_threshold", "image.nsfw", 0.6)
    block = _number(nsfw, "block_threshold", "image.nsfw", 0.9)
    if block < blur:
        raise ValueError("policy: image.nsfw.block_threshold must be at least blur_threshold")
    return ImagePolicy(
        nsfw_blur_threshold=blur, nsfw_block_threshold=block,
        face_action=_action(faces.get("action", "flag"), "image.faces.action", ACTIONS + ("allow",)),
        face_min_size=int(_number(faces, "min_size", "image.faces", 24, 1, 4096)),
        ocr_enabled=ocr_enabled, ocr_action=_action(ocr.get("action", "block"), "image.ocr.action"),
        blur_radius=_number(d, "blur_radius", "image", 0.08, 0.001, 1.0))


def parse_policy(data, source: str = "") -> Policy:
    """Validate a policy mapping (as read from YAML) into a Policy."""
    if not isinstance(data, dict):
        raise ValueError(f"policy {source or ''}: the file must hold a YAML mapping")
    version = data.get("version")
    if not isinstance(version, (str, int, float)) or str(version).strip() == "":
        raise ValueError("policy: a version is required (every verdict records it)")
    cats = data.get("categories")
    if not isinstance(cats, dict) or not cats:
        raise ValueError("policy: categories must be a non-empty mapping")
    unknown = sorted(set(cats) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"policy: unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
    if "sexual_minors" not in cats:
        raise ValueError("policy: the sexual_minors category may not be left out")
    negative = data.get("safety_negative_prompt", "")
    if not isinstance(negative, str):
        raise ValueError("policy: safety_negative_prompt must be a string")
    return Policy(version=str(version), name=str(data.get("name", "")),
                  allowed_use_cases=tuple(str(u) for u in data.get("allowed_use_cases", []) or []),
                  categories={name: _category(name, d) for name, d in cats.items()},
                  safety_negative_prompt=negative.strip(), image=_image(data.get("image", {}) or {}),
                  source=source)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Policy:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"policy file {path} is not valid YAML: {e}") from e
    return parse_policy(data, source=path)


def load_policy(path: str | os.PathLike | None = None) -> Policy:
    """The policy at `path`, else the `policy` setting, else the packaged default (cached per file).

    CONJURE_POLICY is read again on each call, so that setting it after the settings were first
    read still takes effect.
    """
    from conjure.config import get_settings
    chosen = path or os.environ.get(POLICY_ENV) or get_settings().policy or DEFAULT_POLICY_PATH
    p = Path(chosen)
    if not p.is_file():
        raise ValueError(f"policy file {p} does not exist (set {POLICY_ENV} to a YAML policy file)")
    return _load(str(p.resolve()), p.stat().st_mtime)
