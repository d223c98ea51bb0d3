"""Job records in the shared SQL store, and every change of a job's state.

A job's `spec` is immutable JSON written once at creation: the single source of truth that the queue
points to by id. State changes are conditional UPDATEs (`... WHERE status IN (allowed sources)`), so two
processes racing for one job cannot both win: that is what makes completion exactly-once when a job runs
more than once (at-least-once delivery after a worker dies).
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from conjure.db import Base


class JobStatus(str, enum.Enum):
    QUEUED = "queued"         # waiting in the queue (also after a retry or a lost worker)
    RUNNING = "running"       # a worker holds the lease
    SUCCEEDED = "succeeded"   # outputs committed (once)
    FAILED = "failed"         # bad input found late, timeout, or retries used up
    CANCELLED = "cancelled"   # by its owner, queued or running
    REFUSED = "refused"       # a safety verdict refused the prompt or an output

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


# The one place that says which state may follow which (the creation states are QUEUED and REFUSED).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.REFUSED,
                                  JobStatus.QUEUED}),   # QUEUED: retry after a transient error, or lease lost
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.REFUSED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def sources_of(target: JobStatus) -> list[str]:
    """The states a job may be in to move to `target`."""
    return [s.value for s, nxt in TRANSITIONS.items() if target in nxt]


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict] = mapped_column(JSON)                 # immutable after creation
    spec_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    preview: Mapped[str | None] = mapped_column(Text, nullable=True)   # small PNG, base64
    outputs: Mapped[list | None] = mapped_column(JSON, nullable=True)  # [{key, seed, width, height}]
    verdicts: Mapped[list] = mapped_column(JSON, default=list)       # safety verdicts, as the API returns them
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    compute_s: Mapped[float] = mapped_column(Float, default=0.0)


class Charge(Base):
    """One row per completed job (the primary key makes a second charge for the same job impossible)."""

    __tablename__ = "job_charges"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    day: Mapped[str] = mapped_column(String(10), index=True)          # UTC date, YYYY-MM-DD
    images: Mapped[int] = mapped_column(Integer)


class WorkerRecord(Base):
    """A worker's last sign of life (readiness, utilisation metrics)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float, index=True)
    busy: Mapped[bool] = mapped_column(Boolean, default=False)
    models: Mapped[list] = mapped_column(JSON, default=list)   # warm models


class WorkerStats(Base):
    """A worker's running totals (model cache and sampling), summed by /metrics across every worker."""

    __tablename__ = "worker_stats"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cache_hits: Mapped[int] = mapped_column(Integer, default=0)
    cache_misses: Mapped[int] = mapped_column(Integer, default=0)       # loads
    cache_evictions: Mapped[int] = mapped_column(Integer, default=0)
    batches: Mapped[int] = mapped_column(Integer, default=0)            # sampling runs (a lone job is a batch of 1)
    batched_jobs: Mapped[int] = mapped_column(Integer, default=0)
    sampled_images: Mapped[int] = mapped_column(Integer, default=0)
    sample_s: Mapped[float] = mapped_column(Float, default=0.0)         # seconds in sampling loops


STAT_FIELDS = ("cache_hits", "cache_misses", "cache_evictions", "batches", "batched_jobs", "sampled_images",
               "sample_s")


def record_stats(s: Session, worker_id: str, totals: dict[str, float]) -> None:
    """Write a worker's totals (absolute values, so a repeated write is harmless)."""
    row = s.get(WorkerStats, worker_id)
    if row is None:
        row = WorkerStats(worker_id=worker_id, **{k: 0 for k in STAT_FIELDS})
        s.add(row)
    for k in STAT_FIELDS:
        setattr(row, k, totals.get(k, 0))


def touch_worker(s: Session, worker_id: str, busy: bool, models: list[str]) -> None:
    now = time.time()
    row = s.get(WorkerRecord, worker_id)
    if row is None:
        s.add(WorkerRecord(id=worker_id, started_at=now, last_seen=now, busy=busy, models=models))
    else:
        row.last_seen, row.busy, row.models = now, busy, models


def live_workers(s: Session, within_s: float) -> list[WorkerRecord]:
    return list(s.scalars(select(WorkerRecord).where(WorkerRecord.last_seen > time.time() - within_s)))


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def utc_day(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if t is None else t))


def new_job(owner: str, spec: dict, *, priority: int = 0, max_attempts: int = 3,
            idempotency_key: str | None = None, status: JobStatus = JobStatus.QUEUED,
            verdicts: list | None = None, error: str | None = None) -> Job:
    """A job record ready to add; a refused job is created terminal, with its verdicts."""
    assert status in (JobStatus.QUEUED, JobStatus.REFUSED)
    now = time.time()
    return Job(id=uuid.uuid4().hex, owner=owner, status=status.value, priority=priority, spec=spec,
               spec_hash=spec_hash(spec), idempotency_key=idempotency_key, created_at=now,
               finished_at=now if status.terminal else None, attempts=0, max_attempts=max_attempts,
               cancel_requested=False, progress_step=0, progress_total=0, verdicts=verdicts or [],
               error=error, compute_s=0.0)


def move(s: Session, job_id: str, target: JobStatus, *where, **values) -> bool:
    """Move a job to `target` if its current state allows it (and `where` holds); True if it moved."""
    if target.terminal:
        values.setdefault("finished_at", time.time())
    stmt = (update(Job).where(Job.id == job_id, Job.status.in_(sources_of(target)), *where)
            .values(status=target.value, **values))
    return s.execute(stmt).rowcount == 1


# --- worker side -------------------------------------------------------------------------------------------

def claim(s: Session, job_id: str, worker: str, lease_s: float) -> Job | None:
    """Take a queued job for `worker` with a fresh lease; None if it is not queued (done, cancelled, taken)."""
    now = time.time()
    moved = move(s, job_id, JobStatus.RUNNING, Job.cancel_requested.is_(False), lease_owner=worker,
                 lease_expires=now + lease_s, started_at=now, attempts=Job.attempts + 1,
                 progress_step=0, preview=None)
    return s.get(Job, job_id, populate_existing=True) if moved else None


def _fresh_queued(*conds):
    """Queued jobs a worker may take straight from the store: first attempts only (a retry waits out its backoff
    on the queue), not cancelled; highest priority first, then oldest."""
    return (select(Job).where(Job.status == JobStatus.QUEUED.value, Job.attempts == 0,
                              Job.cancel_requested.is_(False), *conds)
            .order_by(Job.priority.desc(), Job.created_at, Job.id))


def next_for_models(s: Session, models: list[str]) -> str | None:
    """Model affinity: the id of the next queued job for one of `models` (those a worker holds), if any."""
    if not models:
        return None
    return s.scalar(_fresh_queued(Job.spec["model"].as_string().in_(models)).with_only_columns(Job.id).limit(1))


def batch_key(spec: dict) -> tuple | None:
    """What jobs must share to sample as one batch; None for a job that cannot batch (an init image or mask,
    music).
    Prompt, negative prompt, guidance (other than 1 = no guidance), seed and n may differ."""
    if spec.get("init_image") or spec.get("mask") or spec.get("task", "image") != "image":
        return None
    return (spec.get("model"), spec.get("size"), spec.get("steps"), spec.get("scheduler"),
            spec.get("precision", "fp32"), spec.get("guidance") == 1.0)


def claim_companions(s: Session, lead: Job, worker: str, lease_s: float, room: int, scan: int = 64) -> list[Job]:
    """Claim queued jobs that can sample in one batch with `lead`, up to `room` images; each claim is the same
    conditional update as `claim`, so a job another worker took meanwhile is skipped."""
    key = batch_key(lead.spec)
    if key is None or room <= 0:
        return []
    rows = s.scalars(_fresh_queued(Job.spec["model"].as_string() == lead.spec["model"], Job.id != lead.id)
                     .limit(scan)).all()
    picked = []
    for row in rows:
        n = int(row.spec.get("n", 1))
        if n <= room and batch_key(row.spec) == key and (job := claim(s, row.id, worker, lease_s)) is not None:
            picked.append(job)
            room -= n
        if room <= 0:
            break
    return picked


def expired_finished(s: Session, before: float, limit: int = 500) -> list[str]:
    """Ids of finished jobs (any terminal state) that ended before `before` (retention)."""
    return list(s.scalars(select(Job.id).where(Job.status.in_([t.value for t in TERMINAL]), Job.finished_at < before)
                          .order_by(Job.finished_at).limit(limit)))


def heartbeat(s: Session, job_id: str, worker: str, lease_s: float) -> bool:
    """Renew the lease; False when the lease is no longer ours (expired and taken, or the job ended)."""
    stmt = (update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.lease_owner == worker)
            .values(lease_expires=time.time() + lease_s))
    return s.execute(stmt).rowcount == 1


def report_progress(s: Session, job_id: str, worker: str, step: int, total: int,
                    preview: str | None = None) -> tuple[bool, bool]:
    """Write progress; returns (still ours, cancel requested)."""
    values = {"progress_step": step, "progress_total": total}
    if preview is not None:
        values["preview"] = preview
    stmt = (update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.lease_owner == worker)
            .values(**values))
    ours = s.execute(stmt).rowcount == 1
    cancel = bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return ours, cancel


def commit_outputs(s: Session, job: Job, worker: str, outputs: list[dict], verdicts: list,
                   compute_s: float) -> bool:
    """Succeed the job and charge its owner, once: only the lease holder of a running job can."""
    ok = move(s, job.id, JobStatus.SUCCEEDED, Job.lease_owner == worker, outputs=outputs, verdicts=verdicts,
              lease_owner=None, lease_expires=None, compute_s=Job.compute_s + compute_s, preview=None)
    if ok:
        charged = sum(o.get("media_type") != "audio/midi" for o in outputs)   # a piece's MIDI file is free
        s.add(Charge(job_id=job.id, owner=job.owner, day=utc_day(), images=charged))
    return ok


def end_attempt(s: Session, job_id: str, worker: str, target: JobStatus, compute_s: float = 0.0,
                **values) -> bool:
    """Leave RUNNING for `target` (failed, cancelled, refused, or queued for a retry) as the lease holder."""
    return move(s, job_id, target, Job.lease_owner == worker, lease_owner=None, lease_expires=None,
                compute_s=Job.compute_s + compute_s, **values)


def reap_expired(s: Session, now: float | None = None) -> list[str]:
    """Requeue running jobs whose lease ran out (their worker died); fail those with no attempts left.

    Returns the ids to put back on the queue.
    """
    now = time.time() if now is None else now
    expired = s.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value, Job.lease_expires < now)).all()
    requeue = []
    for job in expired:
        still = Job.lease_expires < now
        if job.cancel_requested:
            move(s, job.id, JobStatus.CANCELLED, still, lease_owner=None, lease_expires=None)
        elif job.attempts >= job.max_attempts:
            move(s, job.id, JobStatus.FAILED, still, lease_owner=None, lease_expires=None,
                 error=f"the worker stopped responding on each of {job.attempts} attempts")
        elif move(s, job.id, JobStatus.QUEUED, still, lease_owner=None, lease_expires=None):
            requeue.append(job.id)
    return requeue


# --- API side ----------------------------------------------------------------------------------------------

def request_cancel(s: Session, job_id: str) -> JobStatus:
    """Cancel a queued job now, or ask its worker to stop a running one; returns the state it is in."""
    if move(s, job_id, JobStatus.CANCELLED, cancel_requested=True):
        return JobStatus.CANCELLED
    s.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
              .values(cancel_requested=True))
    return JobStatus(s.scalar(select(Job.status).where(Job.id == job_id)))


def queued_count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED.value)) or 0


def images_charged(s: Session, owner: str, day: str | None = None) -> int:
    q = select(func.coalesce(func.sum(Charge.images), 0)).where(Charge.owner == owner,
                                                                 Charge.day == (day or utc_day()))
    return int(s.scalar(q))


def status_counts(s: Session) -> dict[str, int]:
    return dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())


@dataclass(frozen=True)
class JobFilter:
    """What a list request may filter on; `owner` None = every owner (admins)."""

    owner: str | None = None
    status: JobStatus | None = None
    model: str | None = None
    created_after: float | None = None
    created_before: float | None = None


def list_jobs(s: Session, f: JobFilter, limit: int, offset: int) -> tuple[list[Job], int]:
    """One page, newest first, and the total count under the filter."""
    conds = []
    if f.owner is not None:
        conds.append(Job.owner == f.owner)
    if f.status is not None:
        conds.append(Job.status == f.status.value)
    if f.model is not None:
        conds.append(Job.spec["model"].as_string() == f.model)
    if f.created_after is not None:
        conds.append(Job.created_at >= f.created_after)
    if f.created_before is not None:
        conds.append(Job.created_at < f.created_before)
    total = s.scalar(select(func.count()).select_from(Job).where(*conds)) or 0
    rows = s.scalars(select(Job).where(*conds).order_by(Job.created_at.desc(), Job.id)
                     .limit(limit).offset(offset)).all()
    return list(rows), total
