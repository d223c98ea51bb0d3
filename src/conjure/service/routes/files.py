"""Job files through signed, expiring URLs: the signature is the permission, so no key is needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from conjure.service.core import ServiceError
from conjure.service.deps import Context
from conjure.service.signing import verify
from conjure.service.storage import check_key

router = APIRouter(prefix="/v1/files", tags=["files"])
MEDIA = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "wav": "audio/wav", "mp3": "audio/mpeg",
         "flac": "audio/flac", "opus": "audio/ogg", "m4a": "audio/mp4", "mid": "audio/midi"}


@router.get("/{key:path}", summary="Download a job file by signed URL",
            responses={200: {"content": {m: {} for m in sorted(set(MEDIA.values()))}}, 403: {}, 404: {}})
def download(key: str, ctx: Context, expires: Annotated[int, Query(ge=0, le=2**40)],
             signature: Annotated[str, Query(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]) -> Response:
    try:
        check_key(key)
    except ValueError:
        raise ServiceError(404, "no such file") from None
    why = verify(ctx.secret, key, expires, signature)
    if why:
        raise ServiceError(403, why)
    try:
        data = ctx.storage.get(key)
    except FileNotFoundError:
        raise ServiceError(404, "the file is gone: its job was deleted") from None
    media = MEDIA.get(key.rsplit(".", 1)[-1], "application/octet-stream")
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})
