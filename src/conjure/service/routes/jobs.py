"""The native jobs API: create (JSON, or multipart with an init image and mask), get, list, cancel,
delete, and progress as Server-Sent Events with step previews."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from sqlalchemy import delete

from conjure.service.core import ServiceContext, ServiceError, get_job, job_public, submit
from conjure.service.deps import Context, CurrentUser, DbSession, RateLimitedUser
from conjure.service.jobs import Job, JobFilter, JobStatus, list_jobs, request_cancel
from conjure.service.schemas import MAX_PAGE, CancelPublic, ErrorBody, JobCreate, JobCreateForm, JobPublic, JobsPublic
from conjure.service.uploads import UploadError, read_image

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
IdempotencyKey = Annotated[str | None, Header(max_length=128, description="Repeat a create safely: the same key "
                                              "and parameters return the first job instead of a new one.")]
ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 404: {"model": ErrorBody},
          409: {"model": ErrorBody}, 413: {"model": ErrorBody}, 429: {"model": ErrorBody}}
SSE_POLL_S = 0.25
MAX_OFFSET = 2**31 - 1          # SQL integers: a larger offset is refused (422), not a database error


def _created(ctx: ServiceContext, request: Request, response: Response, sub) -> JobPublic:
    response.status_code = 201 if sub.created else 200
    response.headers["Location"] = f"/v1/jobs/{sub.job.id}"
    return job_public(ctx, sub.job, str(request.base_url))


@router.post("", status_code=201, response_model=JobPublic, responses=ERRORS,
             summary="Create a job (text to image)")
def create_job(body: JobCreate, ctx: Context, user: RateLimitedUser, request: Request, response: Response,
               idempotency_key: IdempotencyKey = None) -> JobPublic:
    """Queue a generation; 201 with the job (200 when an Idempotency-Key repeats an earlier request)."""
    return _created(ctx, request, response, submit(ctx, user, body, None, idempotency_key))


async def read_upload(ctx: ServiceContext, upload: UploadFile | None, what: str):
    """An uploaded image read with a byte bound (never more than the limit + 1 bytes in memory)."""
    if upload is None:
        return None
    data = await upload.read(ctx.settings.max_upload_bytes + 1)
    try:
        return read_image(data, what, ctx.settings.max_upload_bytes)
    except UploadError as e:
        raise ServiceError(413 if len(data) > ctx.settings.max_upload_bytes else 400, str(e)) from None


@router.post("/edit", status_code=201, response_model=JobPublic, responses=ERRORS,
             summary="Create an editing job (image to image, inpainting)")
async def create_edit_job(body: Annotated[JobCreateForm, Form()], ctx: Context, user: RateLimitedUser,
                          request: Request, response: Response,
                          init_image: Annotated[UploadFile, File(description="PNG, JPEG or WebP to start from.")],
                          mask: Annotated[UploadFile | None, File(description="White = repaint, black = keep; "
                                                                  "same size as the init image.")] = None,
                          idempotency_key: IdempotencyKey = None) -> JobPublic:
    """Multipart form: the generation fields plus `init_image` and an optional inpainting `mask`."""
    uploads = {"init_image": await read_upload(ctx, init_image, "init image"),
               "mask": await read_upload(ctx, mask, "mask")}
    sub = await asyncio.to_thread(submit, ctx, user, body, uploads, idempotency_key)
    return _created(ctx, request, response, sub)


@router.get("", response_model=JobsPublic, summary="List jobs (newest first)")
def list_(ctx: Context, s: DbSession, user: CurrentUser, request: Request,
          status: JobStatus | None = None, model: Annotated[str | None, Query(max_length=128)] = None,
          created_after: float | None = None, created_before: float | None = None,
          all_users: Annotated[bool, Query(description="Admins: every user's jobs.")] = False,
          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> JobsPublic:
    if all_users and not user.is_admin:
        raise ServiceError(403, "all_users=true needs an admin key")
    f = JobFilter(owner=None if all_users else user.name, status=status, model=model,
                  created_after=created_after, created_before=created_before)
    rows, total = list_jobs(s, f, limit, offset)
    base = str(request.base_url)
    return JobsPublic(data=[job_public(ctx, j, base) for j in rows], count=len(rows), total=total,
                      limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS, summary="Get a job")
def get(job_id: str, ctx: Context, s: DbSession, user: CurrentUser, request: Request) -> JobPublic:
    return job_public(ctx, get_job(s, user, job_id), str(request.base_url))


@router.post("/{job_id}/cancel", status_code=202, response_model=CancelPublic, responses=ERRORS,
             summary="Cancel a queued or running job")
def cancel(job_id: str, s: DbSession, user: CurrentUser) -> CancelPublic:
    """A queued job is cancelled at once; a running one stops at its next sampling step."""
    job = get_job(s, user, job_id)
    if JobStatus(job.status).terminal:
        raise ServiceError(409, f"the job has already {job.status}; delete it instead")
    status = request_cancel(s, job_id)
    s.commit()
    return CancelPublic(id=job_id, status=status.value)


@router.delete("/{job_id}", status_code=204, responses=ERRORS, summary="Delete a job and its files")
def remove(job_id: str, ctx: Context, s: DbSession, user: CurrentUser) -> Response:
    """A running job is cancelled first; its worker then finds no record to commit to and drops its files."""
    get_job(s, user, job_id)
    request_cancel(s, job_id)
    s.execute(delete(Job).where(Job.id == job_id))
    s.commit()
    ctx.storage.delete_prefix(f"jobs/{job_id}")
    return Response(status_code=204)


@router.get("/{job_id}/events", summary="Progress as Server-Sent Events",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}, **ERRORS})
def events(job_id: str, ctx: Context, s: DbSession, user: CurrentUser, request: Request) -> StreamingResponse:
    """Events: `progress` {status, step, total, preview (PNG data URI, when a new one exists)}; then one
    `done` with the whole job, after which the stream ends."""
    get_job(s, user, job_id)
    limit_s = ctx.settings.job_timeout_s * (1 + ctx.settings.job_retries) + 3600   # bounded even if never run
    return StreamingResponse(_event_stream(ctx, job_id, request, limit_s), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _event_stream(ctx: ServiceContext, job_id: str, request: Request, limit_s: float):
    def read():
        with ctx.sessions() as s:
            return s.get(Job, job_id)
    last, last_preview, end = None, None, time.monotonic() + limit_s
    while time.monotonic() < end and not await request.is_disconnected():
        job = await asyncio.to_thread(read)
        if job is None:
            yield _sse("error", {"detail": "the job was deleted"})
            return
        state = (job.status, job.progress_step, job.progress_total)
        if state != last or (job.preview and job.preview != last_preview):
            data = {"status": job.status, "step": job.progress_step, "total": job.progress_total}
            if job.preview and job.preview != last_preview:
                data["preview"] = "data:image/png;base64," + job.preview
                last_preview = job.preview
            yield _sse("progress", data)
            last = state
        if JobStatus(job.status).terminal:
            yield _sse("done", job_public(ctx, job, str(request.base_url)).model_dump())
            return
        await asyncio.sleep(SSE_POLL_S)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
