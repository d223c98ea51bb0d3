"""Text to music as a queued job: POST /v1/music creates a job of task "music" in the same queue, with the same
screening, idempotency, quotas, progress events, signed output URLs and audit as image jobs. Its outputs are the
audio file (C2PA-signed for wav, mp3, flac and aac) and the MIDI file it was rendered from."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from conjure.service.core import submit
from conjure.service.deps import Context, RateLimitedUser
from conjure.service.routes.jobs import ERRORS, IdempotencyKey, _created
from conjure.service.schemas import JobPublic, MusicCreate

router = APIRouter(prefix="/v1/music", tags=["jobs"])


@router.post("", status_code=201, response_model=JobPublic, responses=ERRORS,
             summary="Create a music job (text to music)")
async def create_music_job(body: MusicCreate, ctx: Context, user: RateLimitedUser, request: Request,
                           response: Response, idempotency_key: IdempotencyKey = None) -> JobPublic:
    """Queue a composition; follow it at /v1/jobs/{id} or /v1/jobs/{id}/events like any job."""
    sub = await asyncio.to_thread(submit, ctx, user, body, None, idempotency_key)
    return _created(ctx, request, response, sub)
