"""Model cache, affinity and dynamic batching: only compatible jobs share a batch, each job of a batch commits
once (one output set, charge and audit entry each), a batched request's images match its unbatched images
(within one grey level: the batch changes the shapes the float kernels run at), a cancelled job leaves a batch
without stopping the others, the cache evicts beyond its budget, and the retention sweep deletes old jobs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conjure.db import session_factory
from conjure.pipelines.product import Job as PipelineJob
from conjure.pipelines.request import GenerationRequest
from conjure.service.app import create_app
from conjure.service.core import compute_cost
from conjure.service.jobs import Charge, Job, JobStatus, claim, claim_companions, new_job
from conjure.service.retention import sweep
from conjure.service.storage import make_storage
from conjure.service import worker as worker_mod
from conjure.service.worker import ModelCache, Worker

from .conftest import FAST, MODEL, make_settings

PIXEL_TOLERANCE = 1   # measured: batched and unbatched images differ by at most 1 grey level (often 0)


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_model_dir):
    """An app with no worker running (jobs stay queued until a test runs them) and room for many jobs."""
    settings = make_settings(tmp_path_factory.mktemp("batch-home"), tiny_model_dir, queue_max=100, max_batch=8,
                             cost_per_compute_hour=3.6)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _add(settings, spec: dict, **kw) -> str:
    full = {"prompt": "p", "negative_prompt": "", "n": 1, "seed": 0, "steps": 2, "guidance": None,
            "scheduler": None, "size": 256, "model": MODEL, "strength": 0.75, "precision": "fp32", **spec}
    job = new_job("alice", full, **kw)
    with session_factory(settings.db_url)() as s, s.begin():
        s.add(job)
    return job.id


def _clear(settings):
    with session_factory(settings.db_url)() as s, s.begin():
        s.query(Job).filter(Job.status == JobStatus.QUEUED.value).update({"status": JobStatus.CANCELLED.value})


def test_batching_claims_only_compatible_jobs_up_to_the_image_limit(home):
    _, settings = home
    _clear(settings)
    lead = _add(settings, {"prompt": "lead", "n": 2})
    ok = [_add(settings, {"prompt": "other prompt", "guidance": 3.0, "seed": 9}),
          _add(settings, {"prompt": "negative too", "negative_prompt": "blur", "n": 3})]
    bad = [_add(settings, {"steps": 3}), _add(settings, {"size": 128}), _add(settings, {"scheduler": "euler"}),
           _add(settings, {"precision": "bf16"}), _add(settings, {"model": "another"}),
           _add(settings, {"guidance": 1.0}), _add(settings, {"init_image": "jobs/x/input-init_image.png"})]
    too_big = _add(settings, {"n": 4})   # 2 + 1 + 3 + 4 > 8 images
    with session_factory(settings.db_url)() as s, s.begin():
        job = claim(s, lead, "w1", 30)
        picked = claim_companions(s, job, "w1", 30, room=8 - 2)
    assert sorted(j.id for j in picked) == sorted(ok)
    with session_factory(settings.db_url)() as s:
        states = {j.id: j.status for j in s.scalars(select(Job).where(Job.id.in_(bad + [too_big])))}
    assert set(states.values()) == {"queued"}
    _clear(settings)


def test_a_batch_of_jobs_commits_each_once_with_its_own_outputs_charge_and_audit(home):
    client, settings = home
    _clear(settings)
    ids = [client.post("/v1/jobs", json={"prompt": p, "n": n, "seed": s, "guidance": g, **FAST}).json()["id"]
           for p, n, s, g in [("apple", 1, 1, 5.0), ("banana", 2, 50, 2.0), ("cherry", 1, 7, 8.0)]]
    worker = Worker(settings, queue=client.app.state.ctx.queue)
    worker.warm(MODEL)
    assert worker.execute(worker.take()) == JobStatus.SUCCEEDED
    jobs = [client.get(f"/v1/jobs/{i}").json() for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3                       # one sampling run for all three
    assert [len(j["outputs"]) for j in jobs] == [1, 2, 1]
    assert [o["seed"] for o in jobs[1]["outputs"]] == [50, 51]
    assert worker.stats["batches"] == 1 and worker.stats["sampled_images"] == 4
    assert all(j["cost_estimate"] == pytest.approx(j["compute_s"] / 1000, abs=1e-4) for j in jobs)
    with session_factory(settings.db_url)() as s:
        charges = dict(s.execute(select(Charge.job_id, Charge.images).where(Charge.job_id.in_(ids))).all())
        from conjure.provenance.audit import AuditEntry
        audited = dict(s.execute(select(AuditEntry.job_id, func.count()).where(AuditEntry.job_id.in_(ids))
                                 .group_by(AuditEntry.job_id)).all())
    assert charges == {ids[0]: 1, ids[1]: 2, ids[2]: 1} and audited == charges
    for job_id in ids:   # the messages left on the queue are no-ops now
        assert worker.execute(job_id) is None
    metrics = client.get("/metrics").text
    for name in ("conjure_queue_depth", "conjure_job_latency_seconds_bucket", "conjure_worker_utilisation",
                 "conjure_model_cache_hits_total", "conjure_sampled_images_total", "conjure_sample_seconds_total"):
        assert name in metrics


def test_a_job_cancelled_mid_batch_ends_cancelled_and_the_others_commit(home, monkeypatch):
    client, settings = home
    _clear(settings)
    ids = [client.post("/v1/jobs", json={"prompt": p, **FAST}).json()["id"] for p in ("one", "two", "three")]
    real = worker_mod.claim_companions

    def claim_then_cancel(s, lead, *a, **kw):   # the owner cancels the second job just after the batch forms
        picked = real(s, lead, *a, **kw)
        s.query(Job).filter(Job.id == ids[1]).update({"cancel_requested": True})
        return picked
    monkeypatch.setattr(worker_mod, "claim_companions", claim_then_cancel)
    worker = Worker(settings, queue=client.app.state.ctx.queue)
    worker.warm(MODEL)
    assert worker.execute(worker.take()) == JobStatus.SUCCEEDED
    jobs = [client.get(f"/v1/jobs/{i}").json() for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded", "cancelled", "succeeded"]
    assert jobs[1]["outputs"] == [] and all(len(jobs[k]["outputs"]) == 1 for k in (0, 2))
    with session_factory(settings.db_url)() as s:
        assert s.scalar(select(func.count()).select_from(Charge).where(Charge.job_id == ids[1])) == 0


def test_affinity_prefers_the_loaded_model_and_falls_back_to_the_queue(home):
    client, settings = home
    _clear(settings)
    while client.app.state.ctx.queue.take() is not None:
        pass
    cold = client.post("/v1/jobs", json={"prompt": "first in line", "model": "cold", **FAST})
    assert cold.status_code == 400   # unknown models never queue; put one in the store and the queue by hand
    other = _add(settings, {"model": "not-loaded"})
    client.app.state.ctx.queue.put(other)
    time.sleep(0.01)
    mine = _add(settings, {"prompt": "later, but warm"})
    worker = Worker(settings, queue=client.app.state.ctx.queue, models=_FakeCache([(MODEL, "fp32")]))
    assert worker.take() == mine                         # the newer job, for the model it holds
    cold_worker = Worker(settings, queue=client.app.state.ctx.queue, models=_FakeCache([]))
    assert cold_worker.take() == other                   # nothing loaded: the queue's head
    _clear(settings)


class _FakeCache(ModelCache):
    def __init__(self, loaded):
        super().__init__(budget_mb=1)
        self._pipes.update({k: None for k in loaded})


class _Pipe:
    def __init__(self, mb: float):
        self.unet = torch.nn.Linear(1, int(mb * 2**20 / 4), bias=False)   # `mb` MiB of fp32 weights


def test_cache_evicts_least_recently_used_beyond_its_memory_budget(monkeypatch):
    cache = ModelCache(budget_mb=1.5)
    monkeypatch.setattr(cache, "_load", lambda name, precision: _Pipe(0.6))
    a = cache.get("a")
    cache.get("b")
    assert cache.get("a") is a and cache.hits == 1          # 1.2 MiB: both fit
    cache.get("c")                                          # 1.8 MiB: "b" (least recent) goes
    assert [k for k, _ in cache.loaded()] == ["a", "c"] and cache.evictions == 1
    assert cache.used_bytes() <= 1.5 * 2**20
    monkeypatch.setattr(cache, "_load", lambda name, precision: _Pipe(2.0))
    cache.get("big")                                        # alone over budget: kept, every other evicted
    assert [k for k, _ in cache.loaded()] == ["big"] and cache.misses == 4


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    from conjure.pipelines.text_to_image import TextToImagePipeline
    return TextToImagePipeline.from_folder(tiny_model_dir)


REQUESTS = [("a red apple", 1, 7, 5.0), ("a blue car", 2, 100, 3.0), ("a cat face", 1, 42, 7.5)]


def test_batched_images_match_unbatched_within_tolerance(pipe):
    reqs = [GenerationRequest(p, n=n, seed=s, steps=3, size=64, guidance=g) for p, n, s, g in REQUESTS]
    alone = [pipe(r) for r in reqs]
    together = pipe.generate_batch(reqs, [PipelineJob() for _ in reqs])
    for a, b in zip(alone, together):
        assert a.seeds == b.seeds
        for x, y in zip(a.images, b.images):
            diff = np.abs(np.asarray(x, dtype=int) - np.asarray(y, dtype=int)).max()
            assert diff <= PIXEL_TOLERANCE


def test_a_request_that_leaves_mid_batch_does_not_stop_the_others(pipe):
    reqs = [GenerationRequest(p, n=n, seed=s, steps=3, size=64, guidance=g) for p, n, s, g in REQUESTS]

    class Cancelled(Exception):
        pass

    def cancel_at_2(step, total):
        if step == 2:
            raise Cancelled()
    calls = []
    results = pipe.generate_batch(reqs, [PipelineJob() for _ in reqs],
                                  progress=[lambda *a: calls.append(a), cancel_at_2, None])
    assert isinstance(results[1], Cancelled)
    assert len(results[0].images) == 1 and len(results[2].images) == 1 and calls[-1] == (3, 3)
    with pytest.raises(ValueError, match="share steps"):
        pipe.generate_batch([reqs[0], GenerationRequest("x", steps=4, size=64)], [PipelineJob(), PipelineJob()])


def test_retention_sweep_deletes_old_finished_jobs_and_their_files(home):
    _, settings = home
    storage = make_storage(settings)
    sessions = session_factory(settings.db_url)
    old, recent, running = _add(settings, {}), _add(settings, {}), _add(settings, {})
    now = time.time()
    with sessions() as s, s.begin():
        s.query(Job).filter(Job.id == old).update({"status": "succeeded", "finished_at": now - 3 * 86400})
        s.query(Job).filter(Job.id == recent).update({"status": "failed", "finished_at": now - 3600})
        s.query(Job).filter(Job.id == running).update({"status": "running", "created_at": now - 9 * 86400})
    for job_id in (old, recent, running):
        storage.put(f"jobs/{job_id}/1-out-0.png", b"png")
    assert sweep(sessions, storage, retention_days=0, now=now) == []       # 0 = keep forever
    assert sweep(sessions, storage, retention_days=2, now=now) == [old]
    with sessions() as s:
        assert s.get(Job, old) is None and s.get(Job, recent) is not None and s.get(Job, running) is not None
    assert not storage.exists(f"jobs/{old}/1-out-0.png") and storage.exists(f"jobs/{recent}/1-out-0.png")
    assert compute_cost(settings, 1800.0) == pytest.approx(1.8)
