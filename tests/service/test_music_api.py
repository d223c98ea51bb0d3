"""Text to music as a queued job (POST /v1/music) through a real server and an in-process worker: the audio and
its MIDI file as signed outputs, C2PA on the audio, audit entries for both, one quota unit, and bad requests."""

from __future__ import annotations

import pytest

from conjure.provenance import audit
from conjure.provenance.credentials import read_credentials

from .conftest import make_settings, start_live_server


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir, tiny_music_model):
    settings = make_settings(tmp_path_factory.mktemp("music-home"), tiny_model_dir, music_model=tiny_music_model)
    live, _, stop = start_live_server(settings)
    yield live
    stop()


def test_music_job_delivers_signed_audio_and_midi(live):
    r = live.client.post("/v1/music", json={"prompt": "a lively jig in D major, 4 bars", "seed": 5,
                                            "response_format": "mp3", "key_guidance": 2.0})
    assert r.status_code == 201, r.text
    job = live.wait_job(r.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["task"] == "music" and job["spec"]["model"] == "conjure-music"
    assert job["spec"]["key_guidance"] == 2.0
    audio, midi = job["outputs"]
    assert (audio["media_type"], midi["media_type"]) == ("audio/mpeg", "audio/midi")
    assert audio["duration_s"] > 1 and audio["width"] is None
    got_audio, got_midi = live.client.get(audio["url"]), live.client.get(midi["url"])
    assert got_audio.headers["content-type"] == "audio/mpeg" and got_midi.content[:4] == b"MThd"
    assert read_credentials(got_audio.content, mime="audio/mpeg").state in ("trusted", "valid")
    import hashlib
    for data in (got_audio.content, got_midi.content):
        entries = audit.find(output_sha256=hashlib.sha256(data).hexdigest(), url=live.settings.db_url)
        assert [e["job_id"] for e in entries] == [job["id"]]


def test_music_requests_are_screened_and_validated(live):
    refused = live.client.post("/v1/music", json={"prompt": "a jig for a massacre in the street, bodies everywhere"})
    assert refused.status_code == 201 and refused.json()["status"] == "refused"
    assert refused.json()["verdicts"][0]["category"] == "violence"
    bad_key = live.client.post("/v1/music", json={"prompt": "a jig", "key": "H major"})
    assert bad_key.status_code == 400 and "cannot read key" in bad_key.json()["detail"]
    for body in ({"prompt": ""}, {"prompt": "a jig", "bars": 1000}, {"prompt": "a jig", "meter": "5/4"},
                 {"prompt": "a jig", "steps": 20}, {"prompt": "a jig", "response_format": "midi"},
                 {"prompt": "a jig", "key_guidance": 5}, {"prompt": "a jig", "key_guidance": -1}):
        assert live.client.post("/v1/music", json=body).status_code == 422, body
