"""The OpenAI-compatible audio API (speech and transcriptions), driven by the official `openai` package
against a real server on loopback."""

from __future__ import annotations

import threading

import openai
import pytest

from conjure.config import Settings
from conjure.provenance import audit
from conjure.provenance.credentials import read_credentials

from .conftest import free_port, wait_for

TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn in a thread; the audio routes run in the API process, so no worker is needed."""
    import uvicorn

    from conjure.service.app import create_app
    app = create_app(Settings(home=tmp_path_factory.mktemp("audio-home")), workers=0)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, 30, "uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused-on-loopback", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def spoken(client) -> bytes:
    return client.audio.speech.create(model="tts-1", voice="joe", input=TEXT, response_format="wav").content


def test_speech_is_signed_audited_audio(spoken):
    assert spoken.startswith(b"RIFF")
    report = read_credentials(spoken)
    assert report.state in ("valid", "trusted") and report.generation["model"] == "voice:joe"
    assert len(audit.find(output_sha256=__import__("hashlib").sha256(spoken).hexdigest())) == 1


def test_speech_formats_and_speed(client):
    mp3 = client.audio.speech.create(model="tts-1", voice="joe", input="Hello there.", response_format="mp3")
    assert mp3.content.startswith(b"ID3") and mp3.response.headers["content-type"] == "audio/mpeg"
    fast = client.audio.speech.create(model="tts-1", voice="espeak", input="Hello there, how are you?",
                                      response_format="pcm", speed=2.0)
    slow = client.audio.speech.create(model="tts-1", voice="espeak", input="Hello there, how are you?",
                                      response_format="pcm", speed=0.5)
    assert 0 < len(fast.content) < len(slow.content)


def test_transcriptions_json_text_and_word_timestamps(client, spoken):
    plain = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", spoken, "audio/wav"))
    words = set(plain.text.split())
    assert len(words & {"quick", "brown", "fox", "lazy", "dog", "sunny", "day", "park"}) >= 6, plain.text
    text = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", spoken), response_format="text")
    assert isinstance(text, str) and "fox" in text
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", spoken),
                                                 response_format="verbose_json", timestamp_granularities=["word"])
    assert verbose.duration > 3 and verbose.words and verbose.words[0].word == plain.text.split()[0]
    assert all(w.end > w.start >= 0 for w in verbose.words)


def test_bad_requests_are_openai_errors(client):
    for kwargs, needle in [({"voice": "nobody", "input": "hi"}, "unknown voice"),
                           ({"voice": "joe", "input": ""}, "input"),
                           ({"voice": "joe", "input": "a" * 5000}, "input"),
                           ({"voice": "joe", "input": "hi", "speed": 10.0}, "speed")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.audio.speech.create(model="tts-1", **kwargs)
        assert needle in e.value.body["message"], e.value.body
    for name, data in [("notes.wav", b"not audio at all " * 50), ("empty.wav", b"")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.audio.transcriptions.create(model="whisper-1", file=(name, data))
        assert e.value.body["code"] == "invalid_audio", e.value.body


def test_refused_text_is_a_content_policy_violation(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="joe",
                                   input="a massacre in the street, bodies everywhere, photorealistic")
    body = e.value.body
    assert body["code"] == "content_policy_violation" and body["verdict"]["category"] == "violence"


def test_speech_streams_clause_by_clause_and_is_audited(client, server):
    import hashlib

    import httpx
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="joe", input=TEXT, response_format="pcm", extra_body={"stream_format": "audio"}) as r:
        assert r.headers["x-conjure-streamed"] == "clauses" and r.headers["content-type"] == "audio/pcm"
        pcm = b"".join(r.iter_bytes())
    seconds = len(pcm) / 2 / 24000                   # OpenAI's pcm: 24 kHz, 16-bit mono
    assert len(pcm) % 2 == 0 and 3.0 < seconds < 12.0
    assert [e["output_sha256"] for e in audit.find(output_sha256=hashlib.sha256(pcm).hexdigest())]
    chunks = []                                      # one chunk per clause (TEXT has two), each sent when ready
    with httpx.stream("POST", server + "/v1/audio/speech", timeout=120,
                      json={"input": TEXT, "voice": "joe", "response_format": "wav", "stream_format": "audio"}) as r:
        chunks = list(r.iter_raw())
    wav = b"".join(chunks)
    assert len(chunks) >= 2 and wav[:4] == b"RIFF" and wav[36:40] == b"data"
    refused = httpx.post(server + "/v1/audio/speech", timeout=60, json={
        "input": "a massacre in the street, bodies everywhere", "voice": "joe", "response_format": "pcm",
        "stream_format": "audio"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_policy_violation"
    mp3 = httpx.post(server + "/v1/audio/speech", timeout=60,
                     json={"input": TEXT, "voice": "joe", "response_format": "mp3", "stream_format": "audio"})
    assert mp3.status_code == 400 and "streaming is available for pcm, wav" in mp3.text
