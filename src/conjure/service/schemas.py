"""Request and response bodies, in families (JobCreate / JobPublic / JobsPublic). Every limit is declared
on the schema, so the OpenAPI document states it and a violation is a 422 that names the field."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from conjure.diffusion.samplers import SAMPLERS
from conjure.music.corpus import METERS
from conjure.music.prompt import KEY_GUIDANCE, MAX_BARS, MAX_BPM, MAX_KEY_GUIDANCE, MIN_BARS, MIN_BPM
from conjure.music.prompt import MAX_PROMPT_CHARS as MAX_MUSIC_PROMPT_CHARS
from conjure.pipelines.request import MAX_GUIDANCE, MAX_N, MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS

Scheduler = Enum("Scheduler", {name: name for name in SAMPLERS}, type=str)
MAX_SIZE = 2048
MAX_PRIORITY = 10
MAX_TIMEOUT_S = 24 * 3600.0
MAX_PAGE = 100


class GenerationParams(BaseModel):
    """Every generation parameter the CLI takes (images travel as uploads, not here)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What to draw.")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="What to steer away from.")
    n: int = Field(1, ge=1, le=MAX_N, description="Images; image i uses seed + i.")
    seed: int = Field(0, ge=0, le=MAX_SEED - MAX_N, description="Seed of the first image.")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Sampling steps (model default if unset).")
    guidance: float | None = Field(None, ge=0.0, le=MAX_GUIDANCE, description="Classifier-free guidance scale.")
    scheduler: Scheduler | None = Field(None, description="Sampler (model default if unset).")
    size: int | None = Field(None, ge=64, le=MAX_SIZE, description="Output size in pixels (one of the model's).")
    model: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$",
                              description="Model name (GET /v1/models); the server's default if unset.")
    strength: float = Field(0.75, gt=0.0, le=1.0, description="Share of an init image to repaint.")
    precision: Literal["fp32", "bf16"] = "fp32"


class JobCreate(GenerationParams):
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher runs first.")
    timeout_s: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S,
                                    description="Fail the job after this long (capped by the server's limit).")


class Progress(BaseModel):
    step: int
    total: int


class OutputPublic(BaseModel):
    url: str = Field(description="Signed URL, valid until `expires_at`.")
    expires_at: int
    seed: int
    width: int | None = Field(None, description="Images only.")
    height: int | None = Field(None, description="Images only.")
    media_type: str = Field("image/png", description="image/png, or the audio format's type, or audio/midi.")
    duration_s: float | None = Field(None, description="Audio only.")


class MusicCreate(BaseModel):
    """A text-to-music job: the prompt says style, mood, key, meter, tempo and instrument in words; the fields
    beside it, when set, win over the words."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_MUSIC_PROMPT_CHARS,
                        description="e.g. 'a lively jig in D major on the fiddle'.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Sampling seed: the same seed gives the same tune.")
    bars: int | None = Field(None, ge=MIN_BARS, le=MAX_BARS, description="Length in bars (default 16).")
    tempo: int | None = Field(None, ge=MIN_BPM, le=MAX_BPM, description="Beats per minute (the meter's beat).")
    key: str | None = Field(None, max_length=24, description="e.g. 'D major', 'E minor', 'F#m'.")
    meter: Literal[METERS] | None = Field(None, description="Time signature.")
    instrument: str | None = Field(None, max_length=32, description="General MIDI instrument word, e.g. fiddle.")
    temperature: float = Field(1.0, ge=0.1, le=2.0, description="Sampling temperature.")
    key_guidance: float = Field(KEY_GUIDANCE, ge=0.0, le=MAX_KEY_GUIDANCE,
                                description="Weight of the asked key's pitch profile in sampling (0 = the model "
                                            "alone; higher keeps the tune more firmly in the key).")
    response_format: Literal["wav", "mp3", "flac", "opus", "aac"] = "wav"
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher runs first.")
    timeout_s: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S,
                                    description="Fail the job after this long (capped by the server's limit).")

    @property
    def n(self) -> int:          # one piece: what the quota counts
        return 1


class JobPublic(BaseModel):
    id: str
    status: str
    priority: int
    spec: dict = Field(description="The immutable job spec as stored (images as storage keys).")
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    progress: Progress
    outputs: list[OutputPublic]
    verdicts: list[dict] = Field(description="Safety verdicts (category, reason, check) where screening ran.")
    error: str | None
    compute_s: float = Field(description="Worker seconds spent on the job (its share of a batch it ran in).")
    cost_estimate: float | None = Field(None, description="compute_s priced at the server's "
                                        "CONJURE_COST_PER_COMPUTE_HOUR; null when no price is set.")


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int
    total: int
    limit: int
    offset: int


class ErrorBody(BaseModel):
    detail: str


class CancelPublic(BaseModel):
    id: str
    status: str


class ModelPublic(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "conjure"
    kind: str
    sizes: list[int] | None = None


class ModelsPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPublic]



class JobCreateForm(JobCreate):
    """JobCreate as multipart form fields (beside the file fields, which the form model must let pass)."""

    model_config = ConfigDict(extra="ignore", use_enum_values=True)
