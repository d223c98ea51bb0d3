"""What one generated output is, as provenance records it, and what of its prompt may be recorded.

`record_prompt` (setting `CONJURE_RECORD_PROMPT`) decides, in one place, what the PNG parameters chunk,
the C2PA manifest, the job record and the audit log keep of a prompt:

- `full`: the prompt itself;
- `hash`: `sha256:<hex>` of the prompt (proves a given prompt later without storing it);
- `none`: the empty string.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

RECORD_PROMPT_MODES = ("full", "hash", "none")


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def recordable_prompt(prompt: str, mode: str | None = None) -> str:
    """The form of `prompt` that may be recorded under `mode` (default: the `record_prompt` setting)."""
    if mode is None:
        from conjure.config import get_settings
        mode = get_settings().record_prompt
    if mode not in RECORD_PROMPT_MODES:
        raise ValueError(f"record_prompt must be one of {', '.join(RECORD_PROMPT_MODES)}, got {mode!r}")
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
    if mode == "full":
        return prompt
    if mode == "hash":
        return f"sha256:{sha256_hex(prompt)}" if prompt else ""
    return ""


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_watermark_id() -> int:
    """A random, non-zero 32-bit watermark id (the audit log maps it back to its job)."""
    return secrets.randbelow(2**32 - 1) + 1


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class GenerationRecord:
    """One output image: who asked for what, which model made it, and how.

    `prompt` and `negative_prompt` are the user's text; every writer passes them through
    `recordable_prompt` (see `recorded()`), so a record built here never leaks more than the setting allows.
    """

    prompt: str
    model: str                                    # model name, e.g. "conjure-tiny"
    model_hash: str                               # short hash of the weights (the A1111 "Model hash")
    seed: int
    params: dict = field(default_factory=dict)    # steps, sampler, guidance, size, task, ... (JSON-able)
    negative_prompt: str = ""
    job_id: str = field(default_factory=new_job_id)
    user: str = ""                                # API key name or local user; "" = anonymous / CLI
    verdicts: list | dict = field(default_factory=list)   # safety verdicts, JSON-able
    policy_version: str = ""
    watermark_id: int = field(default_factory=new_watermark_id)
    created_at: str = field(default_factory=utc_now)

    def __post_init__(self):
        if not isinstance(self.watermark_id, int) or not 0 < self.watermark_id < 2**32:
            raise ValueError(f"watermark_id must be an integer in 1..2**32-1, got {self.watermark_id!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.params, dict):
            raise ValueError("params must be a dict of JSON-able generation parameters")

    def recorded(self, mode: str | None = None) -> dict:
        """The record as it may be written anywhere: prompts in their recordable form."""
        d = asdict(self)
        d["prompt"] = recordable_prompt(self.prompt, mode)
        d["negative_prompt"] = recordable_prompt(self.negative_prompt, mode)
        return d
