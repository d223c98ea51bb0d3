"""The OpenAI-compatible audio API: text to speech and speech to text.

Both run synchronously in the API process (in a thread, so the event loop stays free), not as queued jobs:
speech of up to 4000 characters takes seconds on a warm Piper voice process, which the API process keeps
warm between requests, and a transcription of at most ten minutes of audio takes about a fifth of its
length. The speech file is screened, signed (C2PA for wav, mp3, flac and aac in M4A) and audited as the
CLI's is; transcriptions produce text, not media, and are not audited.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from conjure.pipelines.speech import FORMATS, MAX_SPEECH_CHARS, MAX_SPEED, MIN_SPEED, Refused, default_pipeline
from conjure.pipelines.transcribe import MAX_AUDIO_BYTES, transcribe
from conjure.service.core import ServiceError
from conjure.service.deps import RateLimitedUser

router = APIRouter(prefix="/v1/audio", tags=["openai"])


class SpeechCreate(BaseModel):
    """OpenAI's fields; `model` is accepted for compatibility (the voice decides the engine)."""

    model_config = ConfigDict(extra="ignore")   # OpenAI fields conjure has no use for (instructions) are ignored

    input: str = Field(min_length=1, max_length=MAX_SPEECH_CHARS)
    model: str | None = Field(None, max_length=128)
    voice: str | None = Field(None, max_length=64, description="A registered voice (GET /v1/audio/voices).")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: Literal["audio"] | None = Field(None, description="'audio': send pcm or wav clause by clause "
                                                   "as it is spoken (chunked; no C2PA manifest, audited at the end).")


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionVerbose(BaseModel):
    task: str = "transcribe"
    language: str
    duration: float
    text: str
    words: list[TranscriptionWord]


def _speak(body: SpeechCreate, user: str):
    try:
        return default_pipeline()(body.input, voice=body.voice, speed=body.speed, fmt=body.response_format,
                                  user=user)
    except Refused as e:
        raise ServiceError(400, f"the request was refused by the content policy: {e.verdict.reason}",
                           code="content_policy_violation", extra={"verdict": e.verdict.to_dict()}) from None
    except ValueError as e:
        raise ServiceError(400, str(e), code="invalid_value") from None


@router.post("/speech", summary="Create speech (OpenAI-compatible)", response_class=Response,
             responses={200: {"content": {mime: {} for mime, _, _ in FORMATS.values()},
                              "description": "The audio file."}})
async def speech(body: SpeechCreate, user: RateLimitedUser) -> Response:
    if body.stream_format == "audio":
        return await _stream(body, user.name)
    result = await asyncio.to_thread(_speak, body, user.name)
    headers = {"X-Conjure-Sha256": result.sha256}
    if result.manifest_id:
        headers["X-Conjure-Manifest"] = result.manifest_id
    return Response(result.audio, media_type=result.mime, headers=headers)


async def _stream(body: SpeechCreate, user: str) -> StreamingResponse:
    """Check and screen first (errors are ordinary JSON answers), then stream each clause's bytes as ready."""
    def first():
        try:
            chunks = default_pipeline().stream_file(body.input, voice=body.voice, speed=body.speed,
                                                    fmt=body.response_format, user=user)
            return chunks, next(chunks, b"")
        except Refused as e:
            raise ServiceError(400, f"the request was refused by the content policy: {e.verdict.reason}",
                               code="content_policy_violation", extra={"verdict": e.verdict.to_dict()}) from None
        except ValueError as e:
            raise ServiceError(400, str(e), code="invalid_value") from None
    chunks, head = await asyncio.to_thread(first)

    async def body_iter():
        yield head
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk
    return StreamingResponse(body_iter(), media_type=FORMATS[body.response_format][0],
                             headers={"X-Conjure-Streamed": "clauses"})


@router.post("/transcriptions", summary="Transcribe audio (OpenAI-compatible; US English, pocketsphinx)",
             response_model=None)
async def transcriptions(user: RateLimitedUser,
                         file: Annotated[UploadFile, File(description="Audio: WAV, MP3, FLAC, Opus, M4A, ...")],
                         model: Annotated[str | None, Form(max_length=128)] = None,
                         language: Annotated[str | None, Form(max_length=16)] = None,
                         response_format: Annotated[Literal["json", "text", "verbose_json"], Form()] = "json"):
    """`verbose_json` carries each word with its start and end in seconds."""
    if language and language.lower().split("-")[0] != "en":
        raise ServiceError(400, f"language '{language}' is not available: conjure transcribes English (en)",
                           code="unsupported_language")
    data = await file.read(MAX_AUDIO_BYTES + 1)
    if len(data) > MAX_AUDIO_BYTES:
        raise ServiceError(413, f"the file is larger than {MAX_AUDIO_BYTES} bytes: send a shorter recording",
                           code="file_too_large")
    try:
        result = await asyncio.to_thread(transcribe, data)
    except ValueError as e:
        raise ServiceError(400, str(e), code="invalid_audio") from None
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format == "json":
        return {"text": result.text}
    return TranscriptionVerbose(language="english", duration=round(result.duration_s, 3), text=result.text,
                                words=[TranscriptionWord(word=w.word, start=w.start, end=w.end)
                                       for w in result.words])


@router.get("/voices", summary="The registered voices with their licence and provenance")
def voices(user: RateLimitedUser) -> dict:
    from conjure.pipelines.voices import list_voices
    return {"data": [v.to_dict() for v in list_voices()]}
