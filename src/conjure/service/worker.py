"""Workers: take job ids from the queue, run them under a lease, commit each job's outputs once.

`run_job` is the only place the service calls a pipeline; the pipeline's guard screens the prompt and
every output and stamps each file (watermark, parameters chunk, C2PA). Each output's audit entry is staged in
the transaction that commits the job and appended right after; a worker that dies between the two leaves the
entries staged, and the next worker to start or to reap appends them (appends are idempotent per output). So a
job that runs twice (a killed worker) is audited once, and no finished job is left unaudited.

Everything else here is queue semantics: leases renewed by a heartbeat thread, cancellation and per-job
timeouts checked at every sampling step, retries with exponential backoff for transient failures, and lost
workers' jobs requeued by any live worker.

Throughput: the model cache keeps pipelines loaded under a memory budget; a worker first takes queued jobs for a
model it already holds (affinity), and with a job it also claims compatible queued jobs (same model, size,
steps, scheduler, precision; text to image) and samples them as one batch. Each job of a batch still commits,
is charged and is audited on its own, and a cancelled one leaves the batch without stopping the others.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import delete

from conjure.config import Settings
from conjure.service.jobs import (STAT_FIELDS, Job, JobStatus, WorkerRecord, batch_key, claim, claim_companions,
                                  commit_outputs, end_attempt, heartbeat, next_for_models, reap_expired,
                                  record_stats, report_progress, touch_worker)
from conjure.service.queue import JobQueue, make_queue
from conjure.service.storage import Storage, make_storage

log = logging.getLogger("conjure.worker")
PROGRESS_EVERY_S = 0.2      # progress rows written at most this often
PREVIEW_EVERY_S = 0.5       # step previews decoded at most this often
PREVIEW_PIXELS = 96
RETRY_BASE_S = 1.0          # backoff: 1 s, 2 s, 4 s, ...


class JobCancelled(Exception):
    """Its owner cancelled the job while it ran."""


class JobTimeout(Exception):
    """The job ran past its time limit."""


class LeaseLost(Exception):
    """Another worker owns the job now (our lease expired, or the job was deleted)."""


class WorkerStopping(Exception):
    """This worker is shutting down; the job goes back on the queue."""


class TransientError(Exception):
    """A failure worth retrying (storage or database hiccup, a model that could not be loaded right now)."""


TRANSIENT = (TransientError, ConnectionError, TimeoutError, MemoryError)


@dataclass
class JobOutputs:
    images: list[Image.Image]
    seeds: list[int]
    files: list[bytes]                                # the stamped PNGs, stored as they are
    verdicts: list[dict] = field(default_factory=list)
    refused: dict | None = None                       # a verdict that refused the job (no images delivered)
    records: list = field(default_factory=list)       # provenance records of the delivered files, for the audit
    timings: dict = field(default_factory=dict)       # seconds per pipeline stage
    media: list[dict] = field(default_factory=list)   # per file when not PNG images: {"ext", "media_type", ...}


def module_bytes(pipe) -> int:
    """A pipeline's memory estimate: its own `memory_bytes()` where it has one (conjure pipelines: built torch
    modules and ONNX Runtime graphs), else the parameters and buffers of the torch modules it holds (the text
    encoder that every conjure pipeline shares is not counted: evicting a pipeline does not free it)."""
    import torch
    if hasattr(pipe, "memory_bytes"):
        return pipe.memory_bytes()
    seen, total = set(), 0
    parts = list(vars(pipe).values()) + list(getattr(pipe, "components", {}).values()
                                             if isinstance(getattr(pipe, "components", None), dict) else [])
    for part in parts:
        if not isinstance(part, torch.nn.Module):
            continue
        for t in list(part.parameters()) + list(part.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


class ModelCache:
    """Loaded pipelines, least recently used evicted when their estimated size passes the memory budget
    (`CONJURE_MODEL_CACHE_MB`); the pipeline just loaded always stays, even alone over budget."""

    def __init__(self, settings: Settings | None = None, budget_mb: float | None = None):
        self.settings = settings
        if budget_mb is None:
            budget_mb = settings.model_cache_mb if settings else Settings().model_cache_mb
        self.budget_bytes = int(budget_mb * 2**20)
        self._pipes: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._bytes: dict[tuple[str, str], int] = {}
        self.hits = self.misses = self.evictions = 0

    def loaded(self) -> list[tuple[str, str]]:
        return list(self._pipes)

    def used_bytes(self) -> int:
        return sum(self._bytes.values())

    def get(self, name: str, precision: str = "fp32"):
        key = (name, precision)
        if key in self._pipes:
            self.hits += 1
            self._pipes.move_to_end(key)
            return self._pipes[key]
        self.misses += 1
        pipe = self._load(name, precision)
        self._pipes[key], self._bytes[key] = pipe, module_bytes(pipe)
        while self.used_bytes() > self.budget_bytes and len(self._pipes) > 1:
            old, _ = self._pipes.popitem(last=False)
            self._bytes.pop(old)
            self.evictions += 1
            log.info("model evicted", extra={"model": old[0], "precision": old[1]})
        return pipe

    def _load(self, name: str, precision: str):
        from conjure.pipelines import load_pipeline
        pipe = load_pipeline(name, precision=precision, settings=self.settings)
        pipe.guard.audit = False      # the worker audits once the job's outputs are committed
        pipe.guard.db_url = self.settings.db_url if self.settings else None
        return pipe


def build_request(spec: dict, inputs: dict[str, Image.Image]):
    from conjure.pipelines.request import GenerationRequest
    return GenerationRequest(spec["prompt"], negative_prompt=spec["negative_prompt"], n=spec["n"], seed=spec["seed"],
                             steps=spec["steps"], guidance=spec["guidance"], scheduler=spec["scheduler"],
                             size=spec["size"], init_image=inputs.get("init_image"), strength=spec["strength"],
                             mask=inputs.get("mask"))


def run_job(spec: dict, inputs: dict[str, Image.Image], models: ModelCache,
            progress: Callable[[int, int], None] | None = None,
            preview: Callable[[int, Image.Image], None] | None = None,
            job_id: str | None = None, user: str = "") -> JobOutputs:
    """Run one job's generation: the single call from the service into a pipeline."""
    if spec.get("task") == "music":
        return run_music_job(spec, job_id, user, models.settings)
    from conjure.pipelines.product import Job as PipelineJob
    from conjure.pipelines.product import Refused
    # 1. the model (warm in the cache after the first job) and the request, checked against it
    pipe = models.get(spec["model"], spec.get("precision", "fp32"))
    req = pipe.check(build_request(spec, inputs))
    # 2. generate, with progress and (conjure models) decoded step previews; the pipeline screens the
    #    prompt and every image, and stamps each file (watermark, parameters chunk, C2PA)
    kw = {"progress": progress, "job": PipelineJob(job_id or uuid.uuid4().hex, user)}
    if preview is not None and hasattr(pipe, "decode") and hasattr(pipe, "spec"):
        kw["on_latents"] = lambda step, latents: preview(step, _decode_preview(pipe, latents))
    try:
        result = pipe(req, **kw)
    except Refused as e:
        return job_outputs(e)
    return job_outputs(result)


_music_pipes: dict = {}


def run_music_job(spec: dict, job_id: str | None, user: str, settings: Settings | None = None) -> JobOutputs:
    """A text-to-music job: the audio file (signed) and its MIDI file; the worker audits both on commit."""
    from conjure.music.pipeline import MODEL_DIR, MusicPipeline
    from conjure.music.prompt import KEY_GUIDANCE
    from conjure.pipelines.speech import FORMATS
    from conjure.safety.verdict import Refused
    folder = (settings.music_model if settings else None) or MODEL_DIR
    pipe = _music_pipes.get(folder)
    if pipe is None:                                   # the melody model stays loaded in this worker
        pipe = _music_pipes[folder] = MusicPipeline(folder, audit=False)
    try:
        m = pipe(spec["prompt"], seed=spec["seed"], fmt=spec["response_format"], bars=spec["bars"],
                        tempo=spec["tempo"], key=spec["key"], meter=spec["meter"], instrument=spec["instrument"],
                        temperature=spec["temperature"], key_guidance=spec.get("key_guidance", KEY_GUIDANCE),
                        user=user, job_id=job_id)
    except Refused as e:
        verdict = e.verdict.to_dict()
        return JobOutputs([], [], [], verdicts=[verdict], refused=verdict)
    audio_ext = "m4a" if m.fmt == "aac" else m.fmt
    return JobOutputs([], [spec["seed"]] * 2, [m.audio, m.midi], [m.verdict],
                      records=[(m.record, m.sha256, m.manifest_id), (m.record, m.midi_sha256, None)],
                      timings=m.timings,
                      media=[{"ext": audio_ext, "media_type": FORMATS[m.fmt][0], "duration_s": round(m.duration_s, 3)},
                             {"ext": "mid", "media_type": "audio/midi", "duration_s": round(m.duration_s, 3)}])


def job_outputs(result) -> JobOutputs:
    """A pipeline's GenerationResult (or its Refused) as the files and verdicts a job keeps; withheld images
    leave only their verdicts."""
    from conjure.pipelines.product import Refused
    if isinstance(result, Refused):
        verdict = result.verdict.to_dict()
        return JobOutputs([], [], [], verdicts=[verdict], refused=verdict)
    verdicts = [result.prompt_verdict] + [o.verdict for o in result.outputs]
    kept = [o for o in result.outputs if not o.withheld]
    return JobOutputs([o.image for o in kept], [o.seed for o in kept], [o.png for o in kept], verdicts,
                      records=[(o.record, o.sha256, o.manifest_id) for o in kept], timings=result.timings)


def _decode_preview(pipe, latents) -> Image.Image:
    """The first image of a batch of (n, C, h, w) latents, decoded small."""
    return _decode_previews(pipe, [latents])[0]


def _decode_previews(pipe, latents: list) -> list[Image.Image]:
    """The first image of each of several (n, C, h, w) latents, decoded small in one VAE call."""
    import torch
    with torch.inference_mode():
        first = torch.cat([x[:1] for x in latents])                                      # (k, C, h, w)
        x = pipe.decode(first)                                                           # (k, 3, H, W)
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    images = []
    for a in arr:
        im = Image.fromarray(a)
        im.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
        images.append(im)
    return images


def png_bytes(image: Image.Image, parameters: str | None = None) -> bytes:
    info = PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def load_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


class Worker:
    """One worker: a loop over the queue, one job (or one batch of compatible jobs) at a time, with a heartbeat
    thread for the leases."""

    def __init__(self, settings: Settings, *, queue: JobQueue | None = None, storage: Storage | None = None,
                 models: ModelCache | None = None, sessions=None, worker_id: str | None = None):
        from conjure.db import session_factory
        self.settings = settings
        self.queue = queue or make_queue(settings)
        self.storage = storage or make_storage(settings)
        self.models = models or ModelCache(settings)
        self.sessions = sessions or session_factory(settings.db_url)
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.jobs_done = 0
        self.stats = {k: 0 for k in STAT_FIELDS}   # sampling totals; the cache's own counters join at flush
        self._last_reap = 0.0
        self._last_touch = 0.0

    def warm(self, name: str) -> None:
        """Load a model before the first job asks for it."""
        self.models.get(name)
        log.info("model warm", extra={"model": name, "worker": self.id})

    def run_forever(self, poll_s: float = 0.1, max_jobs: int | None = None) -> None:
        """Take and run jobs until `stop` is set (SIGTERM) or `max_jobs` have been run."""
        log.info("worker started", extra={"worker": self.id})
        self.flush_audit()   # entries a crashed worker staged with its committed jobs
        while not self.stop.is_set() and (max_jobs is None or self.jobs_done < max_jobs):
            self.touch(busy=False)
            self.reap()
            job_id = self.take()
            if job_id is None:
                self.stop.wait(poll_s)
                continue
            self.touch(busy=True, force=True)
            self.execute(job_id)
        self.flush_stats()
        with self.sessions() as s, s.begin():
            s.execute(delete(WorkerRecord).where(WorkerRecord.id == self.id))
        log.info("worker stopped", extra={"worker": self.id})

    def take(self) -> str | None:
        """The next job id: with model affinity, the next queued job for a model this worker holds; otherwise
        the queue's head. (The queue message of a job taken from the store becomes a no-op later.)"""
        with self.sessions() as s:
            job_id = next_for_models(s, sorted({name for name, _ in self.models.loaded()}))
        return job_id or self.queue.take()

    def touch(self, busy: bool, force: bool = False) -> None:
        """Record that this worker is alive (at most every 2 s unless forced), with its totals."""
        now = time.time()
        if not force and now - self._last_touch < 2.0:
            return
        self._last_touch = now
        with self.sessions() as s, s.begin():
            touch_worker(s, self.id, busy, [name for name, _ in self.models.loaded()])
            record_stats(s, self.id, self._totals())

    def flush_stats(self) -> None:
        with self.sessions() as s, s.begin():
            record_stats(s, self.id, self._totals())

    def _totals(self) -> dict[str, float]:
        return {**self.stats, "cache_hits": self.models.hits, "cache_misses": self.models.misses,
                "cache_evictions": self.models.evictions}

    def reap(self, force: bool = False) -> None:
        """Requeue the jobs of workers that died (their lease expired), at most every half lease."""
        now = time.time()
        if not force and now - self._last_reap < self.settings.lease_s / 2:
            return
        self._last_reap = now
        self.flush_audit(min_age_s=self.settings.lease_s)   # left staged by a worker that died after its commit
        with self.sessions() as s, s.begin():
            ids = reap_expired(s, now)
            priorities = {j.id: j.priority for j in s.query(Job).filter(Job.id.in_(ids))} if ids else {}
        for job_id in ids:
            log.warning("lease expired: job requeued", extra={"job": job_id, "worker": self.id})
            self.queue.put(job_id, priorities.get(job_id, 0))

    def execute(self, job_id: str) -> JobStatus | None:
        """Run one job if it can be claimed, with the compatible queued jobs it can batch with; returns the
        state the job ended in (None: not ours to run)."""
        with self.sessions() as s, s.begin():
            job = claim(s, job_id, self.id, self.settings.lease_s)
        if job is None:
            return None   # a duplicate message, or a job cancelled or finished meanwhile
        jobs = [job]
        lost = {job.id: threading.Event()}
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(jobs, done, lost), daemon=True)
        beat.start()
        t0 = time.perf_counter()
        try:
            for other in self._companions(job):
                lost[other.id] = threading.Event()
                jobs.append(other)
            self.jobs_done += len(jobs)
            if len(jobs) == 1:
                return self._attempt(job, lost[job.id], t0)
            return self._attempt_batch(jobs, lost, t0)[0]
        finally:
            done.set()
            beat.join()
            self.flush_stats()

    def _companions(self, lead: Job) -> list[Job]:
        """Claim queued jobs that can share `lead`'s sampling batch (up to `max_batch` images in all)."""
        room = self.settings.max_batch - int(lead.spec.get("n", 1))
        if room <= 0 or batch_key(lead.spec) is None:
            return []
        try:
            pipe = self.models.get(lead.spec["model"], lead.spec.get("precision", "fp32"))
        except Exception:   # the lead's own attempt reports it
            return []
        if not hasattr(pipe, "generate_batch"):
            return []
        with self.sessions() as s, s.begin():
            return claim_companions(s, lead, self.id, self.settings.lease_s, room)

    def _heartbeat(self, jobs: list[Job], done: threading.Event, lost: dict[str, threading.Event]) -> None:
        while not done.wait(self.settings.lease_s / 3):
            for job in list(jobs):
                if lost[job.id].is_set():
                    continue
                try:
                    with self.sessions() as s, s.begin():
                        if not heartbeat(s, job.id, self.id, self.settings.lease_s):
                            lost[job.id].set()
                except Exception:   # a database hiccup: try again next beat; the lease is longer than a beat
                    log.exception("heartbeat failed", extra={"job": job.id})

    def _limit(self, job: Job) -> float:
        return min(float(job.spec.get("timeout_s") or self.settings.job_timeout_s), self.settings.job_timeout_s)

    def _attempt(self, job: Job, lost: threading.Event, t0: float) -> JobStatus | None:
        limit = self._limit(job)
        progress, preview = self._callbacks(job.id, lost, time.monotonic() + limit, limit)
        try:
            inputs = {k: load_image(self.storage.get(job.spec[k])) for k in ("init_image", "mask") if job.spec.get(k)}
            result = run_job(job.spec, inputs, self.models, progress, preview, job.id, job.owner)
            self._count(result.timings, [job], len(result.images))
        except Exception as e:
            result = e
        return self._conclude(job, result, lambda: time.perf_counter() - t0, limit)

    def _attempt_batch(self, jobs: list[Job], lost: dict[str, threading.Event], t0: float) -> list[JobStatus | None]:
        """Sample compatible jobs as one batch. Each job concludes (commits, fails, ...) on its own, charged its
        share of the batch's compute seconds by images; one that is cancelled, times out or loses its lease
        mid-batch ends at once, and its rows finish with the batch and are discarded."""
        from conjure.pipelines.product import Job as PipelineJob
        lead = jobs[0]
        pipe = self.models.get(lead.spec["model"], lead.spec.get("precision", "fp32"))
        images = [int(j.spec.get("n", 1)) for j in jobs]
        share = [n / sum(images) for n in images]
        seconds = [lambda f=f: (time.perf_counter() - t0) * f for f in share]
        limits = [self._limit(j) for j in jobs]
        calls = [self._callbacks(j.id, lost[j.id], time.monotonic() + lim, lim) for j, lim in zip(jobs, limits)]
        ended: dict[int, JobStatus | None] = {}

        def leaving(k: int):   # job k's progress: on cancel, timeout or lost lease it concludes now
            def progress(step: int, total: int) -> None:
                try:
                    calls[k][0](step, total)
                except Exception as e:
                    ended[k] = self._conclude(jobs[k], e, seconds[k], limits[k])
                    raise
            return progress
        state = {"last": 0.0}

        def previews(step: int, latents: list) -> None:   # one VAE call for every job's preview
            now = time.monotonic()
            shown = [(k, x) for k, x in enumerate(latents) if x is not None]
            if now - state["last"] < PREVIEW_EVERY_S or not shown:
                return
            state["last"] = now
            for (k, _), image in zip(shown, _decode_previews(pipe, [x for _, x in shown])):
                calls[batch[k]][1](step, image)
        results: list = [None] * len(jobs)
        for k, j in enumerate(jobs):   # input that only the model can judge fails its own job only
            try:
                results[k] = pipe.check(build_request(j.spec, {}))
            except Exception as e:
                ended[k] = self._conclude(j, e, seconds[k], limits[k])
        batch = [k for k in range(len(jobs)) if k not in ended]
        try:
            sampled = pipe.generate_batch([results[k] for k in batch], [PipelineJob(jobs[k].id, jobs[k].owner)
                                                                         for k in batch],
                                          progress=[leaving(k) for k in batch], on_latents=previews)
        except Exception as e:   # the batch as a whole failed: each job concludes with the error
            sampled = [e] * len(batch)
        for k, r in zip(batch, sampled):
            results[k] = r
        done = next((r for r in sampled if hasattr(r, "timings")), None)
        if done is not None:
            self._count(done.timings, [jobs[k] for k in batch], int(done.timings.get("batch_images", 0)))
        log.info("batch sampled", extra={"worker": self.id, "jobs": len(batch), "images": sum(images)})
        for k in batch:
            if k not in ended:
                r = results[k]
                ended[k] = self._conclude(jobs[k], r if isinstance(r, Exception) and not _is_refused(r)
                                          else job_outputs(r), seconds[k], limits[k])
        return [ended[k] for k in range(len(jobs))]

    def _count(self, timings: dict, jobs: list[Job], images: int) -> None:
        if "sample" in timings:
            self.stats["batches"] += 1
            self.stats["batched_jobs"] += len(jobs)
            self.stats["sampled_images"] += images
            self.stats["sample_s"] += timings["sample"]

    def _conclude(self, job: Job, result: JobOutputs | Exception, seconds: Callable[[], float],
                  limit: float) -> JobStatus | None:
        """Commit a job's outputs once (as the lease holder), or end or retry it as its exception says."""
        outputs: list[dict] = []
        try:
            if isinstance(result, Exception):
                raise result
            if result.refused is not None:
                return self._end(job, JobStatus.REFUSED, seconds, verdicts=result.verdicts, error=result.refused.get(
                    "reason", "refused by the safety policy"))
            outputs = self._store(job, result)
            staged = self._stage_audit(result)
            with self.sessions() as s, s.begin():   # 1. the job and its staged audit entries, in one transaction
                ok = commit_outputs(s, job, self.id, outputs, result.verdicts, seconds())
                if ok:
                    s.add_all(staged)
            if not ok:
                raise LeaseLost()
            try:                                    # 2. into the chain (a crash here: the next flush does it)
                self.flush_audit(job_ids=[job.id])
            except Exception:   # committed: never discard its files; the entries stay staged for the next flush
                log.exception("audit append failed: entries stay staged", extra={"job": job.id, "worker": self.id})
            log.info("job succeeded", extra={"job": job.id, "worker": self.id, "images": len(outputs),
                                             "seconds": round(seconds(), 3)})
            return JobStatus.SUCCEEDED
        except LeaseLost:
            self._discard(outputs)
            log.warning("lease lost: outputs discarded", extra={"job": job.id, "worker": self.id})
            return None
        except JobCancelled:
            return self._end(job, JobStatus.CANCELLED, seconds)
        except JobTimeout:
            return self._end(job, JobStatus.FAILED, seconds, error=f"the job ran past its time limit of {limit:g} s: "
                             "ask for fewer steps, images or pixels, or a longer timeout_s")
        except WorkerStopping:   # not the job's fault: requeued without using up an attempt's budget
            return self._retry(job, seconds, "the worker stopped", delay_s=0.0, counted=False)
        except ValueError as e:   # RequestError included: input that only the model can judge
            return self._end(job, JobStatus.FAILED, seconds, error=str(e))
        except TRANSIENT + (OSError,) as e:
            self._discard(outputs)
            return self._retry(job, seconds, f"{type(e).__name__}: {e}")
        except Exception as e:
            self._discard(outputs)
            log.exception("job failed", extra={"job": job.id, "worker": self.id})
            return self._end(job, JobStatus.FAILED, seconds, error=f"internal error ({type(e).__name__}): {e}")
    def _callbacks(self, job_id: str, lost: threading.Event, deadline: float, limit: float):
        state = {"last": 0.0, "last_preview": 0.0, "preview": None}

        def progress(step: int, total: int) -> None:
            if lost.is_set():
                raise LeaseLost()
            if self.stop.is_set():
                raise WorkerStopping()
            if time.monotonic() > deadline:
                raise JobTimeout()
            now = time.monotonic()
            if now - state["last"] < PROGRESS_EVERY_S and step < total:
                return
            state["last"] = now
            with self.sessions() as s, s.begin():
                ours, cancel = report_progress(s, job_id, self.id, step, total, state.pop("preview", None))
            state["preview"] = None
            if not ours:
                raise LeaseLost()
            if cancel:
                raise JobCancelled()

        def preview(step: int, image: Image.Image) -> None:
            now = time.monotonic()
            if now - state["last_preview"] >= PREVIEW_EVERY_S:
                state["last_preview"] = now
                state["preview"] = base64.b64encode(png_bytes(image)).decode()
        return progress, preview

    def _stage_audit(self, result: JobOutputs) -> list:
        """One staged audit entry per output, to commit with the job (a discarded attempt commits none)."""
        from conjure.db import get_engine
        from conjure.provenance import audit
        get_engine(self.settings.db_url)   # creates the staging table if this store has not seen it yet
        return [audit.stage(record, digest, manifest_id or "") for record, digest, manifest_id in result.records]

    def flush_audit(self, job_ids: list[str] | None = None, min_age_s: float = 0.0) -> int:
        """Append staged audit entries (those of `job_ids`, or every one staged `min_age_s` ago) to the chain."""
        from conjure.provenance import audit
        written = audit.flush_pending(self.settings.db_url, job_ids, min_age_s)
        if written and job_ids is None:
            log.warning("audit entries recovered", extra={"worker": self.id, "entries": written})
        return written

    def _store(self, job: Job, result: JobOutputs) -> list[dict]:
        """Write this attempt's stamped files as they are (keys carry the attempt: a stale worker never
        overwrites another's)."""
        outputs = []
        for i, (seed, data) in enumerate(zip(result.seeds, result.files)):
            if result.media:
                meta = dict(result.media[i])
                key = f"jobs/{job.id}/{job.attempts}-out-{i}.{meta.pop('ext')}"
                entry = {"key": key, "seed": seed, **meta}
            else:
                image = result.images[i]
                key = f"jobs/{job.id}/{job.attempts}-out-{i}.png"
                entry = {"key": key, "seed": seed, "width": image.width, "height": image.height}
            self.storage.put(key, data)
            outputs.append(entry)
        return outputs

    def _discard(self, outputs: list[dict]) -> None:
        for out in outputs:
            self.storage.delete_prefix(out["key"])

    def _end(self, job: Job, target: JobStatus, seconds: Callable[[], float], **values) -> JobStatus | None:
        with self.sessions() as s, s.begin():
            ok = end_attempt(s, job.id, self.id, target, seconds(), **values)
        log.info(f"job {target.value}", extra={"job": job.id, "worker": self.id, "error": values.get("error")})
        return target if ok else None

    def _retry(self, job: Job, seconds: Callable[[], float], reason: str, delay_s: float | None = None,
               counted: bool = True) -> JobStatus | None:
        """Back on the queue after `delay_s` (default: exponential backoff), or failed when out of attempts."""
        if counted and job.attempts >= job.max_attempts:
            return self._end(job, JobStatus.FAILED, seconds, error=f"failed on each of {job.attempts} attempts; "
                             f"last: {reason}")
        if delay_s is None:
            delay_s = RETRY_BASE_S * 2 ** (job.attempts - 1)
        extra = {} if counted else {"attempts": Job.attempts - 1}
        status = self._end(job, JobStatus.QUEUED, seconds, error=reason, **extra)
        if status is not None:
            self.queue.put(job.id, job.priority, delay_s)
            log.warning("job requeued", extra={"job": job.id, "reason": reason, "delay_s": delay_s})
        return status


def _is_refused(e: Exception) -> bool:
    from conjure.pipelines.product import Refused
    return isinstance(e, Refused)
