"""Scale-out: the same service code on RedisHuey, PostgreSQL and S3-compatible storage, each chosen by one
setting, against real servers started here on loopback: redis-server and a throwaway PostgreSQL cluster
(Debian packages `redis-server`, `postgresql`; `make system-deps`) and moto's S3 server (PyPI
`moto[server]`). Nothing is installed here: a missing server binary skips its tests with the reason.

The end-to-end test runs two `conjure worker` processes, SIGKILLs one while it holds a job, and checks that
every job completed exactly once: one committed output, one charge and one audit entry each.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conjure.config import Settings
from conjure.db import get_engine
from conjure.provenance import audit
from conjure.provenance.audit import AuditEntry
from conjure.service.jobs import Charge, Job
from conjure.service.queue import make_queue
from conjure.service.storage import LocalStorage, S3Storage, make_storage

from .conftest import MODEL, free_port, make_settings, spawn_worker, start_live_server, wait_for

BUCKET = "conjure-test"
JOBS = 6          # fast jobs, then one slow job whose worker is killed
SLOW_STEPS = 16
SMALL = {"steps": 2, "size": 64}   # 64 px: manifest and audit entry, no watermark (cheaper)


# --- servers on loopback (each started once per module, stopped in teardown) --------------------------------

@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; `make system-deps`)")
    redis = pytest.importorskip("redis", reason="the redis client is not installed (requirements.txt)")
    port, folder = free_port(), tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False
        wait_for(up, 15, "redis-server to answer")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).resolve().parent if which else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway cluster in a temp dir (trust auth, loopback TCP only, fsync off); as root, it runs as the
    `postgres` user, since PostgreSQL refuses to run as root."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (requirements.txt)")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's initdb is not installed (Debian package postgresql; `make system-deps`)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="conjure-pg-"))
    if os.geteuid() == 0:
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        if shutil.which("runuser") is None:
            shutil.rmtree(folder)
            pytest.skip("running as root without `runuser` to start PostgreSQL as the 'postgres' user")
        os.chown(folder, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), folder / "data"

    def pg_ctl(*args: str, timeout: float = 60) -> None:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), *args], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "conjure", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, timeout=120, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        pg_ctl("-o", f"-h 127.0.0.1 -p {port} -k {folder} -F", "-l", str(folder / "log"), "-w", "-t", "60", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {e} {getattr(e, 'stderr', b'')!r}")
    try:
        yield f"postgresql+psycopg://conjure@127.0.0.1:{port}/postgres"
    finally:
        from conjure.db import reset_engines
        reset_engines()   # close this process's connections before the server goes
        pg_ctl("-m", "immediate", "stop", timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3-compatible server in a thread on loopback, with throwaway credentials and one bucket."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed (requirements.txt)")
    import boto3
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        server.start()
        try:
            url = f"http://127.0.0.1:{port}"
            boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
            yield url
        finally:
            server.stop()


# --- each backend behind its interface ---------------------------------------------------------------------

@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "files")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3Storage(BUCKET, f"contract-{tmp_path.name}", endpoint)


def test_storage_contract(storage):
    """What every storage backend must do (the worker and the API rely on exactly this)."""
    storage.put("jobs/a/0-out-0.png", b"first")
    storage.put("jobs/a/0-out-0.png", b"second")            # overwrite
    storage.put("jobs/a/input-mask.png", b"mask")
    storage.put("jobs/ab/0-out-0.png", b"other job")        # shares the text prefix "jobs/a", not the folder
    assert storage.get("jobs/a/0-out-0.png") == b"second" and storage.exists("jobs/a/input-mask.png")
    assert not storage.exists("jobs/a/missing.png")
    with pytest.raises(FileNotFoundError):
        storage.get("jobs/a/missing.png")
    with pytest.raises(ValueError):
        storage.put("../escape.png", b"x")
    assert storage.delete_prefix("jobs/a/input-mask.png") == 1      # one file
    assert storage.delete_prefix("jobs/a") == 1                     # a folder, not its text-prefix neighbours
    assert not storage.exists("jobs/a/0-out-0.png") and storage.get("jobs/ab/0-out-0.png") == b"other job"
    assert storage.delete_prefix("jobs/nothing") == 0


def test_an_unreachable_s3_endpoint_is_a_connection_error_that_workers_retry(monkeypatch):
    pytest.importorskip("boto3", reason="boto3 is not installed (requirements.txt)")
    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    from conjure.service.worker import TRANSIENT
    with pytest.raises(ConnectionError) as err:
        S3Storage(BUCKET, "", f"http://127.0.0.1:{free_port()}").get("jobs/a/0-out-0.png")   # nothing listens
    assert isinstance(err.value, TRANSIENT)

def test_each_backend_is_chosen_by_one_setting(tmp_path, redis_url, postgres_url, s3_endpoint):
    from huey import PriorityRedisHuey
    s = Settings(home=tmp_path, queue_url=redis_url, database_url=postgres_url, storage_url=f"s3://{BUCKET}/p",
                 s3_endpoint_url=s3_endpoint)
    assert isinstance(make_queue(s).huey, PriorityRedisHuey)
    store = make_storage(s)
    assert isinstance(store, S3Storage) and (store.bucket, store.prefix) == (BUCKET, "p")
    assert get_engine(s.db_url).dialect.name == "postgresql"
    with pytest.raises(ValueError, match="names no bucket"):
        make_storage(Settings(home=tmp_path, storage_url="s3://"))


def test_redis_queue_is_json_priority_ordered_and_delays(tmp_path, redis_url):
    import redis
    url = redis_url + "/1"   # a database of its own: the end-to-end test uses 0
    q = make_queue(Settings(home=tmp_path, queue_url=url))
    q.put("low")
    q.put("high", priority=5)
    q.put("later", delay_s=0.5)
    raw = redis.Redis.from_url(url).zrange(q.huey.storage.queue_key, 0, -1)
    assert [json.loads(r[8:])["args"] for r in raw] == [["high"], ["low"]]   # JSON after the 8-byte time prefix
    assert [q.take(), q.take()] == ["high", "low"]
    assert wait_for(q.take, 5, "the delayed message") == "later"


# --- the whole service on Redis + PostgreSQL + S3 with two worker processes --------------------------------

@pytest.fixture(scope="module")
def scaled(tmp_path_factory, tiny_model_dir, redis_url, postgres_url, s3_endpoint):
    home = tmp_path_factory.mktemp("scale-home")
    settings = make_settings(home, tiny_model_dir, queue_url=redis_url, database_url=postgres_url,
                             storage_url=f"s3://{BUCKET}/service", s3_endpoint_url=s3_endpoint, lease_s=3.0)
    live, _, stop = start_live_server(settings, worker_threads=0)
    logs = [home / f"worker-{i}.log" for i in range(2)]
    procs = []
    try:
        procs += [spawn_worker(settings, log) for log in logs]
        yield live, settings, procs, logs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        stop()


def test_two_workers_complete_every_job_exactly_once(scaled):
    live, settings, procs, logs = scaled
    ready = wait_for(lambda: (r := live.client.get("/readyz").json()).get("warm") == 2 and r, 90,
                     "both workers to warm the model")
    assert ready["workers"] == 2
    # fast jobs for both workers, then a slow one whose worker is SIGKILLed mid-sampling (its worker id carries
    # its pid): the lease expires, the other worker runs the job again, and it still completes once
    ids = []
    for i in range(JOBS):
        r = live.client.post("/v1/jobs", json={"prompt": f"apple {i}", "seed": i, **SMALL})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    fast = [live.wait_job(i, timeout=150) for i in ids]
    r = live.client.post("/v1/jobs", json={"prompt": "slow pear", **SMALL, "steps": SLOW_STEPS})
    ids.append(slow := r.json()["id"])
    ctx = live.app.state.ctx

    def slow_job_holder():
        with ctx.sessions() as s:
            job = s.get(Job, slow)
        if job.status == "running" and 0 < job.progress_step < job.progress_total:
            return next((p for p in procs if f":{p.pid}:" in (job.lease_owner or "")), None)
    victim = wait_for(slow_job_holder, 150, "a worker to be sampling the slow job", every=0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    with ctx.sessions() as s:
        assert s.get(Job, slow).status == "running", "the slow job ended before its worker was killed: raise SLOW_STEPS"
    jobs = fast + [live.wait_job(slow, timeout=150)]
    assert [j["status"] for j in jobs] == ["succeeded"] * len(ids), [j["error"] for j in jobs]
    assert jobs[-1]["attempts"] == 2 and all(j["attempts"] == 1 for j in fast)
    # exactly once: one committed output, one charge, one audit entry per job; files live in S3
    assert all(len(j["outputs"]) == 1 for j in jobs)
    with ctx.sessions() as s:
        charges = dict(s.execute(select(Charge.job_id, func.count()).group_by(Charge.job_id)).all())
    assert charges == {i: 1 for i in ids}
    report = audit.verify(settings.db_url)
    assert report.ok, report.problems
    with ctx.sessions() as s:
        entries = dict(s.execute(select(AuditEntry.job_id, func.count()).where(AuditEntry.job_id.in_(ids))
                                 .group_by(AuditEntry.job_id)).all())
    assert entries == {i: 1 for i in ids} and report.entries == len(ids)
    store = make_storage(settings)
    assert isinstance(store, S3Storage) and not (settings.home / "files").exists()
    key = jobs[0]["outputs"][0]["url"].split("/v1/files/")[1].split("?")[0]
    got = live.client.get(jobs[0]["outputs"][0]["url"])
    assert got.status_code == 200 and got.content == store.get(key) and got.content.startswith(b"\x89PNG")
    # each job was committed by one worker; both workers committed fast jobs; the survivor the slow one
    done_by: dict[str, str] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            rec = json.loads(line) if line.startswith("{") else {}
            if rec.get("msg") == "job succeeded":
                assert rec["job"] not in done_by, f"job {rec['job']} committed twice"
                done_by[rec["job"]] = rec["worker"]
    assert set(done_by) == set(ids) and len({done_by[i] for i in ids[:-1]}) == 2
    assert f":{victim.pid}:" not in done_by[slow]
    # PostgreSQL's JSON path works for the list filter too
    assert live.client.get("/v1/jobs", params={"model": MODEL, "limit": 100}).json()["total"] == len(ids)
