"""Operations: liveness, readiness (store reachable, a worker alive with the default model warm), metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from conjure.service.deps import Context
from conjure.service.jobs import live_workers

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses={503: {}})
def readyz(ctx: Context, response: Response) -> dict:
    """Ready when the job store answers and a live worker holds the default model."""
    try:
        with ctx.sessions() as s:
            s.execute(text("SELECT 1"))
            workers = live_workers(s, within_s=max(10.0, ctx.settings.lease_s))
    except Exception as e:
        response.status_code = 503
        return {"status": "unavailable", "reason": f"job store: {type(e).__name__}"}
    warm = [w.id for w in workers if ctx.settings.default_model in (w.models or [])]
    if not warm:
        response.status_code = 503
        return {"status": "starting", "reason": f"no live worker has '{ctx.settings.default_model}' warm yet",
                "workers": len(workers)}
    return {"status": "ready", "workers": len(workers), "warm": len(warm)}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
