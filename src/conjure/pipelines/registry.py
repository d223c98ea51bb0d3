"""Which models exist: built-in folders under models/ and user-added diffusers folders (a JSON registry)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from conjure.config import BUILTIN_MODELS_DIR, Settings, get_settings


@dataclass
class ModelEntry:
    name: str
    path: Path
    kind: str            # "conjure" (built-in format) or the diffusers pipeline class name
    builtin: bool


def _registry_file(settings: Settings) -> Path:
    return settings.models_dir / "registry.json"


def _kind_of(folder: Path) -> str:
    if (folder / "conjure.json").is_file():
        return "conjure"
    index = folder / "model_index.json"
    if index.is_file():
        return json.loads(index.read_text()).get("_class_name", "DiffusionPipeline")
    raise ValueError(f"{folder} is not a model folder: it has neither conjure.json nor a diffusers "
                     "model_index.json")


def list_models(settings: Settings | None = None) -> list[ModelEntry]:
    settings = settings or get_settings()
    out = []
    if BUILTIN_MODELS_DIR.is_dir():
        for d in sorted(BUILTIN_MODELS_DIR.iterdir()):
            if (d / "conjure.json").is_file():
                out.append(ModelEntry(d.name, d, "conjure", True))
    reg = _registry_file(settings)
    if reg.is_file():
        for name, info in sorted(json.loads(reg.read_text()).items()):
            out.append(ModelEntry(name, Path(info["path"]), info["kind"], False))
    return out


def get_model(name: str, settings: Settings | None = None) -> ModelEntry:
    models = {m.name: m for m in list_models(settings)}
    if name not in models:
        known = ", ".join(models) or "none"
        raise ValueError(f"unknown model '{name}'; known models: {known}. "
                         "Add a local diffusers folder with: conjure models add PATH")
    entry = models[name]
    if not entry.path.is_dir():
        raise ValueError(f"model '{name}' points to {entry.path}, which no longer exists; "
                         f"re-add it with: conjure models add PATH --name {name}")
    return entry


def add_model(path: Path, name: str | None = None, settings: Settings | None = None) -> ModelEntry:
    """Register a local diffusers pipeline folder under `name` (default: the folder's name)."""
    settings = settings or get_settings()
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; give the path of a diffusers pipeline folder")
    kind = _kind_of(path)
    name = name or path.name
    if any(m.name == name and m.builtin for m in list_models(settings)):
        raise ValueError(f"'{name}' is a built-in model's name; choose another with --name")
    reg = _registry_file(settings)
    data = json.loads(reg.read_text()) if reg.is_file() else {}
    data[name] = {"path": str(path), "kind": kind}
    reg.parent.mkdir(parents=True, exist_ok=True)
    tmp = reg.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(reg)
    return ModelEntry(name, path, kind, False)
