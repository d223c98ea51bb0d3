"""The OpenAI-compatible images API: generations, edits (transparent mask = repaint) and models, with
OpenAI-shaped error bodies. Each call is a job like any other, awaited until it ends."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from conjure.pipelines.request import MAX_N, MAX_PROMPT_CHARS
from conjure.service.core import ServiceContext, ServiceError, Submission, job_public, submit
from conjure.service.deps import Context, CurrentUser, RateLimitedUser
from conjure.service.jobs import Job, JobStatus
from conjure.service.routes.jobs import read_upload
from conjure.service.schemas import GenerationParams, JobCreate, ModelPublic, ModelsPublic
from conjure.service.uploads import UploadError, has_transparency, mask_from_alpha

router = APIRouter(prefix="/v1", tags=["openai"])
WAIT_POLL_S = 0.1
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 409: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 504: "timeout_error"}


def error_body(message: str, code: str | None, status: int, param: str | None = None, **extra) -> dict:
    kind = code if code == "insufficient_quota" else ERROR_TYPES.get(status, "server_error")   # as OpenAI's quota
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": code, **extra}}


class ImagesCreate(BaseModel):
    """OpenAI's fields (prompt, n, size, response_format, model, user), plus conjure's own."""

    model_config = ConfigDict(extra="ignore")   # OpenAI fields conjure has no use for (quality, style) are ignored

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    n: int = Field(1, ge=1, le=MAX_N)
    size: str | None = Field(None, pattern=r"^(auto|\d{2,4}x\d{2,4})$", description="WIDTHxHEIGHT, square.")
    response_format: Literal["url", "b64_json"] = "url"
    model: str | None = Field(None, max_length=128)
    user: str | None = Field(None, max_length=256)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    seed: int | None = Field(None, ge=0)
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    timeout_s: float | None = None


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


def _size(size: str | None) -> int | None:
    if size in (None, "auto"):
        return None
    w, h = (int(x) for x in size.split("x"))
    if w != h:
        raise ServiceError(400, f"size {size} is not square: conjure makes square images, e.g. 256x256",
                           code="invalid_size")
    return w


def _params(body: ImagesCreate, **edit) -> JobCreate:
    fields = {k: v for k, v in body.model_dump().items() if k in GenerationParams.model_fields and v is not None}
    fields.update(size=_size(body.size), model=None if body.model in (None, "") else body.model, **edit)
    try:
        return JobCreate(**fields)
    except ValueError as e:   # pydantic's ValidationError: the first problem, as OpenAI reports one
        err = json.loads(e.json())[0] if hasattr(e, "json") else {"loc": [], "msg": str(e)}
        param = ".".join(map(str, err["loc"]))
        raise ServiceError(400, f"{param}: {err['msg']}", code="invalid_value") from None


async def _finish(ctx: ServiceContext, sub: Submission, request: Request, fmt: str) -> ImagesResponse:
    """Wait for the job, then answer as OpenAI does (or raise its error)."""
    if sub.refusal is not None:
        raise ServiceError(400, "the request was refused by the content policy: "
                           f"{sub.refusal.get('reason', 'refused')}", code="content_policy_violation",
                           extra={"verdict": sub.refusal, "job_id": sub.job.id})
    limit = ctx.settings.job_timeout_s * (1 + ctx.settings.job_retries) + 60
    job = await asyncio.to_thread(_wait, ctx, sub.job.id, time.monotonic() + limit)
    if job is None or not JobStatus(job.status).terminal:
        raise ServiceError(504, f"the job {sub.job.id} did not finish in time; follow it at /v1/jobs/{sub.job.id}",
                           code="timeout")
    if job.status == JobStatus.REFUSED.value:
        raise ServiceError(400, f"an output was refused by the content policy: {job.error}",
                           code="content_policy_violation", extra={"verdict": (job.verdicts or [None])[-1],
                                                                   "job_id": job.id})
    if job.status != JobStatus.SUCCEEDED.value:
        status = 500 if (job.error or "").startswith("internal error") else 400
        raise ServiceError(status, job.error or f"the job was {job.status}", code=f"job_{job.status}")
    data = []
    public = job_public(ctx, job, str(request.base_url))
    for out, stored in zip(public.outputs, job.outputs):
        if fmt == "b64_json":
            data.append(ImageData(b64_json=base64.b64encode(ctx.storage.get(stored["key"])).decode()))
        else:
            data.append(ImageData(url=out.url))
    return ImagesResponse(created=int(job.created_at), data=data)


def _wait(ctx: ServiceContext, job_id: str, deadline: float) -> Job | None:
    while True:
        with ctx.sessions() as s:
            job = s.get(Job, job_id)
        if job is None or JobStatus(job.status).terminal or time.monotonic() > deadline:
            return job
        time.sleep(WAIT_POLL_S)


@router.post("/images/generations", response_model=ImagesResponse, summary="Create images (OpenAI-compatible)")
async def generations(body: ImagesCreate, ctx: Context, user: RateLimitedUser, request: Request) -> ImagesResponse:
    sub = await asyncio.to_thread(submit, ctx, user, _params(body))
    return await _finish(ctx, sub, request, body.response_format)


@router.post("/images/edits", response_model=ImagesResponse, summary="Edit an image (OpenAI-compatible)")
async def edits(ctx: Context, user: RateLimitedUser, request: Request,
                image: Annotated[UploadFile, File(description="The image to edit (PNG, JPEG or WebP).")],
                prompt: Annotated[str, Form(min_length=1, max_length=MAX_PROMPT_CHARS)],
                mask: Annotated[UploadFile | None, File(description="PNG whose transparent pixels are repainted; "
                                                        "default: the image's own transparency.")] = None,
                n: Annotated[int, Form(ge=1, le=MAX_N)] = 1,
                size: Annotated[str | None, Form(pattern=r"^(auto|\d{2,4}x\d{2,4})$")] = None,
                response_format: Annotated[Literal["url", "b64_json"], Form()] = "url",
                model: Annotated[str | None, Form(max_length=128)] = None,
                negative_prompt: Annotated[str, Form(max_length=MAX_PROMPT_CHARS)] = "",
                seed: Annotated[int | None, Form(ge=0)] = None,
                steps: Annotated[int | None, Form()] = None,
                strength: Annotated[float, Form(gt=0, le=1)] = 1.0) -> ImagesResponse:
    """Inpainting where the mask (or the image itself) is transparent; image-to-image when nothing is."""
    init = await read_upload(ctx, image, "image")
    mask_im = await read_upload(ctx, mask, "mask")
    try:
        if mask_im is not None:
            mask_im = mask_from_alpha(mask_im)
        elif has_transparency(init):
            mask_im = mask_from_alpha(init, "image")
    except UploadError as e:
        raise ServiceError(400, str(e), code="invalid_mask") from None
    body = ImagesCreate(prompt=prompt, n=n, size=size, response_format=response_format, model=model,
                        negative_prompt=negative_prompt, seed=seed, steps=steps)
    sub = await asyncio.to_thread(submit, ctx, user, _params(body, strength=strength),
                                  {"init_image": init, "mask": mask_im})
    return await _finish(ctx, sub, request, response_format)


@router.get("/models", response_model=ModelsPublic, summary="List models (OpenAI-compatible)")
def models(ctx: Context, user: CurrentUser) -> ModelsPublic:
    from conjure.pipelines.registry import list_models
    out = []
    for m in list_models(ctx.settings):
        sizes = None
        if m.kind == "conjure" and (m.path / "conjure.json").is_file():
            sizes = json.loads((m.path / "conjure.json").read_text()).get("sizes")
        out.append(ModelPublic(id=m.name, kind=m.kind, sizes=sizes))
    return ModelsPublic(data=out)
