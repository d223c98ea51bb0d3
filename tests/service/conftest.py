"""Service fixtures: per-module homes with the random tiny model registered, a real uvicorn server on a
free loopback port (in a thread) with an in-process worker thread, and worker subprocesses.

Every loop here is bounded: servers and workers stop at the end of their module, waits time out.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conjure.config import REPO_ROOT, Settings
from conjure.pipelines.registry import add_model

MODEL = "test-tiny"
FAST = {"steps": 2, "size": 256}   # 2 steps; 256 px is the least the provenance watermark accepts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(home: Path, tiny_model_dir: Path, **overrides) -> Settings:
    """Settings for an isolated service home with the tiny model registered as the default."""
    values = dict(home=home, default_model=MODEL, lease_s=3.0, job_timeout_s=120.0, url_ttl_s=600)
    values.update(overrides)
    settings = Settings(**values)
    add_model(tiny_model_dir, MODEL, settings)
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    env = dict(os.environ)
    for name in ("home", "default_model", "lease_s", "job_timeout_s", "queue_url", "storage_url",
                 "s3_endpoint_url", "database_url", "require_auth", "job_retries"):
        env[f"CONJURE_{name.upper()}"] = str(getattr(settings, name))
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    return env


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class LiveServer:
    url: str
    settings: Settings
    app: object
    client: httpx.Client

    def wait_job(self, job_id: str, timeout: float = 60.0, headers: dict | None = None) -> dict:
        def done():
            job = self.client.get(f"/v1/jobs/{job_id}", headers=headers).json()
            return job if job["status"] in ("succeeded", "failed", "cancelled", "refused") else None
        return wait_for(done, timeout, f"job {job_id} to end", every=0.1)


def start_live_server(settings: Settings, worker_threads: int = 1):
    """uvicorn in a thread on a free loopback port, plus in-process worker threads; returns (server, stop)."""
    import uvicorn

    from conjure.service.app import create_app
    from conjure.service.worker import Worker
    app = create_app(settings, workers=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    workers = [Worker(settings) for _ in range(worker_threads)]
    for w in workers:
        w.warm(MODEL)
    threads = [threading.Thread(target=w.run_forever, kwargs={"poll_s": 0.05}, daemon=True) for w in workers]
    for t in threads:
        t.start()
    url = f"http://127.0.0.1:{port}"
    live = LiveServer(url, settings, app, httpx.Client(base_url=url, timeout=30))

    def stop():
        for w in workers:
            w.stop.set()
        for t in threads:
            t.join(30)
        live.client.close()
        server.should_exit = True
        thread.join(30)
    return live, workers, stop


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    settings = make_settings(tmp_path_factory.mktemp("service-home"), tiny_model_dir)
    live, _, stop = start_live_server(settings)
    yield live
    stop()


def spawn_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    """A real `conjure worker` process with these settings (its JSON logs go to log_path)."""
    return subprocess.Popen([sys.executable, "-m", "conjure.cli", "worker"], env=settings_env(settings),
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"))
