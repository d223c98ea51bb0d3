"""The FastAPI application factory, worker child processes, and `serve` (refuses a non-loopback bind
without auth)."""

from __future__ import annotations

import logging
import signal
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import select

from conjure.config import Settings, get_settings
from conjure.db import get_engine, session_factory
from conjure.service import auth as _auth_tables  # noqa: F401  (registers api_keys on Base)
from conjure.service.core import ServiceContext, ServiceError
from conjure.service.jobs import Job, JobStatus
from conjure.service.metrics import Metrics
from conjure.service.processes import WorkerProcesses, check_bind, is_loopback  # noqa: F401  (re-exported)
from conjure.service.queue import make_queue
from conjure.service.retention import RetentionSweeper
from conjure.service.screening import warm_screens
from conjure.service.signing import server_secret
from conjure.service.storage import make_storage

log = logging.getLogger("conjure.server")
OPENAI_PREFIXES = ("/v1/images", "/v1/models", "/v1/audio")


def build_context(settings: Settings) -> ServiceContext:
    get_engine(settings.db_url)   # creates the tables
    return ServiceContext(settings=settings, sessions=session_factory(settings.db_url), queue=make_queue(settings),
                          storage=make_storage(settings), secret=server_secret(settings))


def requeue_waiting(ctx: ServiceContext) -> int:
    """Put every queued job's id on the queue again (a message lost in a crash is restored; a duplicate is a
    no-op for the worker that takes it)."""
    with ctx.sessions() as s:
        rows = s.execute(select(Job.id, Job.priority).where(Job.status == JobStatus.QUEUED.value)).all()
    for job_id, priority in rows:
        ctx.queue.put(job_id, priority)
    return len(rows)


def create_app(settings: Settings | None = None, workers: int = 0, procs: WorkerProcesses | None = None) -> FastAPI:
    """The app; `workers` child processes start with it (or `procs`, started earlier) and stop with it."""
    settings = settings or get_settings()
    server_secret(settings)   # refuse an unsafe secret before anything starts

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.ctx = ctx = build_context(settings)
        app.state.metrics = Metrics(ctx.sessions)
        log.info("server starting", extra={"requeued": requeue_waiting(ctx), "workers": workers})
        children = procs or WorkerProcesses(workers)
        children.start()                     # a no-op when `conjure serve` started them before importing this
        warm_screens()   # while the workers load their models
        sweeper = RetentionSweeper(ctx.sessions, ctx.storage, settings.retention_days, settings.retention_sweep_s)
        sweeper.start()
        try:
            yield
        finally:
            sweeper.stop()
            children.stop()

    from conjure.service.routes import audio, files, jobs, music, openai, ops, preference, web
    app = FastAPI(title="conjure", version="0.1.0", lifespan=lifespan,
                  description="Self-hosted generation service: a native jobs API and an OpenAI-compatible one.")
    for module in (jobs, music, files, openai, audio, ops, preference, web):
        app.include_router(module.router)
    _install_handlers(app)
    return app


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        if request.url.path.startswith(OPENAI_PREFIXES):
            from conjure.service.routes.openai import error_body
            return JSONResponse(error_body(exc.message, exc.code, exc.status, **exc.extra), exc.status,
                                headers=exc.headers)
        return JSONResponse({"detail": exc.message, **exc.extra}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        if request.url.path.startswith(OPENAI_PREFIXES):
            from conjure.service.routes.openai import error_body
            first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
            param = ".".join(str(p) for p in first["loc"][1:]) or None
            return JSONResponse(error_body(f"{param}: {first['msg']}", "invalid_request", 400, param), 400)
        return JSONResponse({"detail": errors}, 422)

    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        m = request.app.state.metrics
        m.requests.labels(request.method, path, str(response.status_code)).inc()
        m.latency.labels(path).observe(time.perf_counter() - t0)
        return response


def serve(settings: Settings, host: str, port: int, workers: int, procs: WorkerProcesses | None = None) -> None:
    """Run the server (blocking). Binding beyond loopback needs CONJURE_REQUIRE_AUTH=true."""
    import uvicorn

    from conjure.service.logs import setup_logging
    check_bind(settings, host)
    setup_logging()
    uvicorn.run(create_app(settings, workers=workers, procs=procs), host=host, port=port, log_config=None)


def run_worker(settings: Settings, warm: list[str]) -> None:
    """One worker process (blocking): warm models, then take jobs until SIGTERM or SIGINT."""
    from conjure.service.logs import setup_logging
    from conjure.service.worker import Worker
    setup_logging()
    worker = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop.set())
    for name in warm:
        worker.warm(name)
    worker.run_forever()
