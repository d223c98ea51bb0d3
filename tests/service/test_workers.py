"""Queue semantics: status transitions, JSON-only queue messages, priorities, backpressure, cancelling
queued jobs, retries with backoff, and a real worker process killed with SIGKILL mid-job."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from conjure.cli import app as cli_app
from conjure.provenance import audit
from conjure.provenance.audit import AuditEntry, AuditPending
from conjure.service import worker as worker_mod
from conjure.service.app import create_app
from conjure.service.jobs import TRANSITIONS, Charge, Job, JobStatus, move
from conjure.service.worker import TransientError, Worker

from .conftest import FAST, free_port, make_settings, settings_env, spawn_worker, wait_for


def test_transitions_are_written_once_and_terminal_states_are_final():
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == {
        JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.REFUSED}
    assert JobStatus.QUEUED in TRANSITIONS[JobStatus.RUNNING]        # retries and lost leases
    assert JobStatus.SUCCEEDED not in TRANSITIONS[JobStatus.QUEUED]   # only a running job can succeed


@pytest.fixture(scope="module")
def quiet(tmp_path_factory, tiny_model_dir):
    """An app with no worker running, so jobs stay queued until a test runs one by hand."""
    settings = make_settings(tmp_path_factory.mktemp("quiet-home"), tiny_model_dir, queue_max=3)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _drain(client, settings):
    """Cancel whatever a test left queued (the queue bound is shared by this module's tests)."""
    for job in client.get("/v1/jobs", params={"status": "queued", "limit": 100}).json()["data"]:
        client.post(f"/v1/jobs/{job['id']}/cancel")
    while client.app.state.ctx.queue.take() is not None:   # their messages, now no-ops
        pass


def test_queue_carries_job_ids_as_json_only(quiet):
    client, settings = quiet
    job_id = client.post("/v1/jobs", json={"prompt": "apple", **FAST}).json()["id"]
    with sqlite3.connect(settings.home / "queue.db") as db:
        rows = [bytes(r[0]) for r in db.execute("select data from task")]
    messages = [json.loads(r) for r in rows]   # JSON, not pickle
    assert any(m["args"] == [job_id] for m in messages)
    _drain(client, settings)


def test_priorities_run_higher_first(quiet, monkeypatch):
    client, settings = quiet
    low = client.post("/v1/jobs", json={"prompt": "low", **FAST}).json()["id"]
    high = client.post("/v1/jobs", json={"prompt": "high", "priority": 5, **FAST}).json()["id"]
    ctx = client.app.state.ctx
    taken = []
    while (job_id := ctx.queue.take()) is not None:
        taken.append(job_id)
    assert taken.index(high) < taken.index(low)
    _drain(client, settings)


def test_full_queue_answers_429_with_retry_after(quiet):
    client, settings = quiet
    for i in range(3):
        assert client.post("/v1/jobs", json={"prompt": f"fill {i}", **FAST}).status_code == 201
    r = client.post("/v1/jobs", json={"prompt": "one too many", **FAST})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "queue is full" in r.json()["detail"]
    _drain(client, settings)
    assert client.post("/v1/jobs", json={"prompt": "room again", **FAST}).status_code == 201
    _drain(client, settings)


def test_cancel_a_queued_job_and_the_worker_skips_it(quiet):
    client, settings = quiet
    job_id = client.post("/v1/jobs", json={"prompt": "never", **FAST}).json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    worker = Worker(settings, queue=client.app.state.ctx.queue)
    assert worker.execute(job_id) is None   # its queue message is now a no-op
    _drain(client, settings)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_transient_failures_retry_with_backoff_then_succeed(quiet, monkeypatch):
    client, settings = quiet
    calls = []
    real = worker_mod.run_job

    def flaky(*args, **kw):
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise TransientError("storage hiccup")
        return real(*args, **kw)
    monkeypatch.setattr(worker_mod, "run_job", flaky)
    monkeypatch.setattr(worker_mod, "RETRY_BASE_S", 0.3)
    job_id = client.post("/v1/jobs", json={"prompt": "retry me", **FAST}).json()["id"]
    worker = Worker(settings, queue=client.app.state.ctx.queue)
    assert worker.execute(worker.queue.take()) == JobStatus.QUEUED
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "queued" and "storage hiccup" in job["error"]
    assert worker.queue.take() is None                      # waiting out its backoff
    again = wait_for(worker.queue.take, 5, "the retry to come due")
    assert again == job_id and worker.execute(again) == JobStatus.SUCCEEDED
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["attempts"] == 2 and len(job["outputs"]) == 1 and calls[1] - calls[0] >= 0.3


def test_retries_run_out(quiet, monkeypatch):
    client, settings = quiet
    monkeypatch.setattr(worker_mod, "run_job", lambda *a, **k: (_ for _ in ()).throw(TransientError("down")))
    monkeypatch.setattr(worker_mod, "RETRY_BASE_S", 0.01)
    job_id = client.post("/v1/jobs", json={"prompt": "doomed", **FAST}).json()["id"]
    worker = Worker(settings, queue=client.app.state.ctx.queue)
    for _ in range(1 + settings.job_retries):
        worker.execute(wait_for(worker.queue.take, 5, "the job"))
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and "each of 3 attempts" in job["error"]


def test_state_changes_are_conditional(quiet):
    client, settings = quiet
    job_id = client.post("/v1/jobs", json={"prompt": "x", **FAST}).json()["id"]
    with client.app.state.ctx.sessions() as s, s.begin():
        assert not move(s, job_id, JobStatus.SUCCEEDED)   # queued -> succeeded is not allowed
        assert move(s, job_id, JobStatus.CANCELLED)
        assert not move(s, job_id, JobStatus.RUNNING)     # terminal


class Crash(BaseException):
    """The process dying: no `except Exception` in the worker sees it."""


def test_a_crash_between_commit_and_audit_leaves_no_job_unaudited(quiet, monkeypatch):
    client, settings = quiet
    posted = client.post("/v1/jobs", json={"prompt": "a lighthouse at dusk", "n": 2, **FAST})
    assert posted.status_code in (200, 201, 202) and posted.json()["status"] == "queued", posted.text
    job_id = posted.json()["id"]
    worker = Worker(settings, queue=client.app.state.ctx.queue)

    def crash(self, job_ids=None, min_age_s=0.0):
        if job_ids:                  # the append right after the commit
            raise Crash()
    monkeypatch.setattr(Worker, "flush_audit", crash)
    with pytest.raises(Crash):
        worker.execute(job_id)       # by id: earlier tests may have left no-op messages on the queue
    monkeypatch.undo()

    def entries() -> list[dict]:
        with client.app.state.ctx.sessions() as s:
            rows = s.execute(select(AuditEntry).where(AuditEntry.job_id == job_id)).all()
        return [audit.entry_dict(r[0]) for r in rows]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and len(job["outputs"]) == 2 and entries() == []   # the window
    for _ in range(2):               # the next worker to start appends them, and a second start adds nothing
        Worker(settings, queue=client.app.state.ctx.queue).run_forever(max_jobs=0)
    files = {hashlib.sha256(client.get(o["url"]).content).hexdigest() for o in job["outputs"]}
    assert sorted(e["output_sha256"] for e in entries()) == sorted(files)   # exactly one entry per output
    with client.app.state.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditPending)) == 0
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 0 and result.output.startswith("ok:"), result.output
    _drain(client, settings)


def test_a_killed_worker_process_job_runs_again_and_commits_once(tmp_path, tiny_model_dir, caplog):
    settings = make_settings(tmp_path / "home", tiny_model_dir, lease_s=2.0)
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/jobs", json={"prompt": "survivor", "n": 2, "steps": 40, "size": 256}).json()["id"]
        victim = spawn_worker(settings, tmp_path / "victim.log")
        try:
            job = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["progress"]["step"] > 0 and j,
                           90, "the first worker to start the job")
            assert job["status"] == "running" and job["attempts"] == 1
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        finally:
            victim.kill()
        rescuer = Worker(settings)   # in this process (the model is loaded already), so the test stays fast
        thread = threading.Thread(target=rescuer.run_forever, kwargs={"poll_s": 0.05}, daemon=True)
        with caplog.at_level(logging.WARNING, logger="conjure.worker"):
            thread.start()
            try:
                job = wait_for(lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and j,
                               120, "the second worker to finish the job", every=0.2)
            finally:
                rescuer.stop.set()
                thread.join(30)
        with client.app.state.ctx.sessions() as s:
            charges = s.scalar(select(func.count()).select_from(Charge).where(Charge.job_id == job_id))
            row = s.get(Job, job_id)
    assert job["attempts"] == 2 and len(job["outputs"]) == 2 and charges == 1
    assert row.lease_owner is None
    files = sorted(p.name for p in (settings.home / "files" / "jobs" / job_id).iterdir())
    assert files == ["2-out-0.png", "2-out-1.png"]   # the killed attempt never committed a file
    assert all(client.get(o["url"]).status_code == 200 for o in job["outputs"])
    assert "lease expired: job requeued" in caplog.messages


def test_serve_refuses_a_public_address_without_auth():
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "CONJURE_REQUIRE_AUTH" in result.stderr


def test_serve_refuses_a_public_address_with_the_development_secret(monkeypatch):
    from conjure.config import get_settings
    monkeypatch.setenv("CONJURE_REQUIRE_AUTH", "true")
    monkeypatch.delenv("CONJURE_SECRET", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    finally:
        monkeypatch.delenv("CONJURE_REQUIRE_AUTH")
        get_settings.cache_clear()
    assert result.exit_code == 2 and "CONJURE_SECRET" in result.stderr


def test_conjure_serve_starts_a_worker_child_and_stops_cleanly(tmp_path, tiny_model_dir):
    settings = make_settings(tmp_path / "home", tiny_model_dir)
    port = free_port()
    # The logs go to a file, never to an unread pipe: every /readyz poll writes an access line, and once a pipe
    # holds 64 KiB (about 410 polls, reproduced here) the server blocks in logging and answers nothing more. A
    # worker slow to warm on a loaded CI machine turned that into "timed out after 180 s waiting for conjure
    # serve to be ready".
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "conjure.cli", "serve", "--port", str(port)],
                                env=settings_env(settings), stdout=subprocess.DEVNULL, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready():
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        try:
            wait_for(ready, 180, "conjure serve to be ready", every=0.3)
        except AssertionError as e:
            raise AssertionError(f"{e}; the server's log ends:\n{log_path.read_text()[-3000:]}") from None
        # generous per-request timeouts: on a loaded 2-core CI machine one poll once took over httpx's default 5 s
        job_id = httpx.post(f"{url}/v1/jobs", json={"prompt": "hello", **FAST}, timeout=30).json()["id"]
        wait_for(lambda: httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()["status"] == "succeeded", 120,
                 "the job", every=0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    err = log_path.read_text()
    assert rc == 0, err[-2000:]
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"server starting", "worker started", "job succeeded", "worker stopped"} <= {ln["msg"] for ln in lines}
    access = [ln["msg"] for ln in lines if ln["logger"] == "uvicorn.access"]
    assert any("/v1/jobs/" in m for m in access)                  # requests are access-logged ...
    assert not any('/readyz HTTP/1.1" 200' in m for m in access)   # ... but not the probes that succeeded


def test_access_log_drops_successful_probes_and_keeps_failed_ones():
    from conjure.service.logs import QuietProbes

    def line(path: str, status: int) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.access", logging.INFO, "h11_impl.py", 1, '%s - "%s %s HTTP/%s" %d',
                                 ("127.0.0.1:5000", "GET", path, "1.1", status), None)
    keep = QuietProbes().filter
    assert not keep(line("/readyz", 200)) and not keep(line("/healthz", 200)) and not keep(line("/metrics?x=1", 200))
    assert keep(line("/readyz", 503)) and keep(line("/v1/jobs", 200)) and keep(line("/readyz-not", 200))
