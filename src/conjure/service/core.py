"""What both APIs (native and OpenAI-compatible) do with a request: submit a job (checks, prompt
screening, idempotency, backpressure, quota, uploads, record, queue) and present one."""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from conjure.config import Settings
from conjure.service.auth import RateLimiter, User
from conjure.service.jobs import Job, JobStatus, images_charged, new_job, queued_count, spec_hash
from conjure.service.queue import JobQueue
from conjure.service.schemas import JobCreate, JobPublic, MusicCreate, OutputPublic, Progress
from conjure.service.screening import screen_prompt
from conjure.service.signing import signed_path
from conjure.service.storage import Storage
from conjure.service.worker import png_bytes


class ServiceError(Exception):
    """An answer other than success: HTTP status, a message that says what to change, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None, code: str | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers, self.code = status, message, headers or {}, code
        self.extra = extra or {}   # more fields for the error body (a refusal's verdict)


@dataclass
class ServiceContext:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    sessions: sessionmaker[Session]
    queue: JobQueue
    storage: Storage
    secret: bytes
    limiter: RateLimiter = field(default_factory=RateLimiter)
    started_at: float = field(default_factory=time.time)


@dataclass
class Submission:
    job: Job
    created: bool        # False: an earlier job with the same Idempotency-Key
    refusal: dict | None = None


def resolve_model(settings: Settings, spec: dict) -> dict:
    """Fill the default model, and check the model and size against the registry (400 with choices)."""
    from conjure.pipelines.registry import get_model
    spec["model"] = spec.get("model") or settings.default_model
    try:
        entry = get_model(spec["model"], settings)
    except ValueError as e:
        raise ServiceError(400, str(e), code="model_not_found") from None
    if entry.kind == "conjure" and spec.get("size") is not None:
        sizes = json.loads((entry.path / "conjure.json").read_text()).get("sizes", [])
        if spec["size"] not in sizes:
            raise ServiceError(400, f"size {spec['size']} is not supported by model '{entry.name}'; choose "
                               f"from: {', '.join(map(str, sizes))}", code="invalid_size")
    return spec


def submit(ctx: ServiceContext, user: User, params: JobCreate | MusicCreate,
           uploads: dict[str, Image.Image] | None = None, idempotency_key: str | None = None) -> Submission:
    """Create a job (or find the one this idempotency key already made) and queue it."""
    uploads = {k: v for k, v in (uploads or {}).items() if v is not None}
    if "mask" in uploads and "init_image" not in uploads:
        raise ServiceError(400, "a mask needs an init image to repaint: upload init_image too")
    if "mask" in uploads and uploads["mask"].size != uploads["init_image"].size:
        raise ServiceError(400, f"the mask is {uploads['mask'].size} but the init image is "
                           f"{uploads['init_image'].size}: they must be the same size")
    if isinstance(params, MusicCreate):
        spec = music_spec(params)
    else:
        spec = resolve_model(ctx.settings, params.model_dump(exclude={"priority"}))
    blobs = {k: png_bytes(im) for k, im in uploads.items()}
    for k, data in blobs.items():
        spec[f"{k}_sha256"] = hashlib.sha256(data).hexdigest()
    with ctx.sessions() as s:
        if idempotency_key and (found := _idempotent(s, user, idempotency_key, spec)):
            return Submission(found, created=False)
    verdicts, refusal = screen_prompt(spec)
    job_id = uuid.uuid4().hex
    if refusal is None:
        _admit(ctx, user, params.n)
        for k, data in blobs.items():
            spec[k] = f"jobs/{job_id}/input-{k}.png"
            ctx.storage.put(spec[k], data)
    status = JobStatus.REFUSED if refusal else JobStatus.QUEUED
    job = new_job(user.name, spec, priority=params.priority, max_attempts=1 + ctx.settings.job_retries,
                  idempotency_key=idempotency_key, status=status, verdicts=verdicts,
                  error=refusal.get("reason") if refusal else None)
    job.id = job_id
    try:
        with ctx.sessions() as s, s.begin():
            s.add(job)
    except IntegrityError:   # the same idempotency key, created a moment ago by a concurrent request
        ctx.storage.delete_prefix(f"jobs/{job_id}")
        with ctx.sessions() as s:
            found = _idempotent(s, user, idempotency_key, spec)
        if found is None:
            raise
        return Submission(found, created=False)
    if refusal is None:
        ctx.queue.put(job.id, params.priority)
    return Submission(job, created=True, refusal=refusal)


def music_spec(params: MusicCreate) -> dict:
    """A music job's spec; the request is parsed now, so a key or instrument the parser rejects is a 400 at once."""
    from conjure.music.pipeline import MODEL_NAME
    from conjure.music.prompt import parse_prompt
    spec = {"task": "music", "model": MODEL_NAME, "n": 1, **params.model_dump(exclude={"priority"})}
    try:
        parse_prompt(spec["prompt"], bars=spec["bars"], tempo=spec["tempo"], key=spec["key"], meter=spec["meter"],
                     instrument=spec["instrument"])
    except ValueError as e:
        raise ServiceError(400, str(e), code="invalid_value") from None
    return spec


def _idempotent(s: Session, user: User, key: str, spec: dict) -> Job | None:
    job = s.scalar(select(Job).where(Job.owner == user.name, Job.idempotency_key == key))
    if job is not None and job.spec_hash != _comparable_hash(job.spec, spec):
        raise ServiceError(409, "this Idempotency-Key was used for a request with other parameters: send a "
                           "new key for a new request", code="idempotency_conflict")
    return job


def _comparable_hash(stored: dict, spec: dict) -> str:
    """Hash `spec` as it would be stored (upload keys included), to compare with the stored job's hash."""
    probe = dict(spec)
    for k in ("init_image", "mask"):
        if k in stored:
            probe[k] = stored[k]
    return spec_hash(probe)


def _admit(ctx: ServiceContext, user: User, n: int) -> None:
    """Backpressure (the queue is full) and the user's daily quota, both 429 with Retry-After (OpenAI answers a used-up
    quota with 429 `insufficient_quota`; X-Should-Retry: false stops the openai client's automatic retries)."""
    with ctx.sessions() as s:
        queued = queued_count(s)
        if queued >= ctx.settings.queue_max:
            wait = _queue_wait_s(s, queued)
            raise ServiceError(429, f"the queue is full ({queued} jobs waiting): retry in {wait} s",
                               {"Retry-After": str(wait)}, code="queue_full")
        if user.daily_quota:
            in_flight = s.scalar(select(func.coalesce(func.sum(Job.spec["n"].as_integer()), 0)).where(
                Job.owner == user.name, Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value])))
            used = images_charged(s, user.name) + int(in_flight or 0)
            if used + n > user.daily_quota:
                wait = int(86400 - time.time() % 86400) + 1
                raise ServiceError(429, f"the daily quota of {user.daily_quota} images is used up ({used} "
                                   f"used or in flight, {n} asked): retry after midnight UTC, in {wait} s",
                                   {"Retry-After": str(wait), "X-Should-Retry": "false"}, code="insufficient_quota")


def _queue_wait_s(s: Session, queued: int) -> int:
    """A Retry-After estimate: queued jobs times the recent mean compute time."""
    recent = s.scalars(select(Job.compute_s).where(Job.status == JobStatus.SUCCEEDED.value)
                       .order_by(Job.finished_at.desc()).limit(20)).all()
    mean = sum(recent) / len(recent) if recent else 2.0
    return int(min(max(math.ceil(mean * queued / 4), 1), 300))


def job_public(ctx: ServiceContext, job: Job, base_url: str = "") -> JobPublic:
    """The API's view of a job; outputs as signed URLs (absolute when base_url is given)."""
    ttl = ctx.settings.url_ttl_s
    expires = int(time.time() + ttl)
    outputs = [OutputPublic(url=base_url.rstrip("/") + signed_path(ctx.secret, o["key"], ttl), expires_at=expires,
                            seed=o["seed"], width=o.get("width"), height=o.get("height"),
                            media_type=o.get("media_type", "image/png"), duration_s=o.get("duration_s"))
               for o in (job.outputs or [])]
    return JobPublic(id=job.id, status=job.status, priority=job.priority, spec=job.spec, created_at=job.created_at,
                     started_at=job.started_at, finished_at=job.finished_at, attempts=job.attempts,
                     progress=Progress(step=job.progress_step, total=job.progress_total), outputs=outputs,
                     verdicts=job.verdicts or [], error=job.error, compute_s=round(job.compute_s, 4),
                     cost_estimate=compute_cost(ctx.settings, job.compute_s))


def compute_cost(settings: Settings, compute_s: float) -> float | None:
    """A job's compute seconds at the configured hourly price (None when no price is set)."""
    rate = settings.cost_per_compute_hour
    return round(compute_s / 3600.0 * rate, 6) if rate > 0 else None


def get_job(s: Session, user: User, job_id: str) -> Job:
    """The job if this user may see it; 404 otherwise (another user's job is indistinguishable from none)."""
    job = s.get(Job, job_id)
    if job is None or (job.owner != user.name and not user.is_admin):
        raise ServiceError(404, f"no job '{job_id}': list yours with GET /v1/jobs", code="not_found")
    return job
