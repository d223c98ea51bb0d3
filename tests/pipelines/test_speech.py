"""Speech and transcription: real round trips (Piper speaks, pocketsphinx hears), every output format through
ffmpeg, C2PA and audit on the output, refusals, bad input, and the CLI's exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import wave
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from conjure.cli import app
from conjure.pipelines.speech import FORMATS, MAX_CLAUSE_CHARS, Refused, SpeechPipeline, split_clauses, wav_bytes
from conjure.pipelines.transcribe import AudioError, transcribe
from conjure.pipelines.voices import UnknownVoice, get_voice, list_voices
from conjure.provenance import audit
from conjure.provenance.credentials import read_credentials

runner = CliRunner()
TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
VIOLENT = "a massacre in the street, bodies everywhere, photorealistic"


@pytest.fixture(scope="module")
def pipe():
    p = SpeechPipeline()
    yield p
    p.close()


def heard_share(reference: str, heard: str) -> float:
    """The share of the reference's words that the transcript contains (as a multiset)."""
    ref = Counter(reference.lower().replace(".", "").replace(",", "").split())
    hyp = Counter(heard.lower().split())
    return sum((ref & hyp).values()) / sum(ref.values())


def test_clauses_split_at_punctuation_and_long_text_is_chunked():
    assert split_clauses("Hello, world. The fox, who was quick, ran; then it slept.\nOK") == [
        "Hello, world.", "The fox, who was quick,", "ran; then it slept.", "OK"]
    long = " ".join(["word"] * 1000)   # no punctuation at all
    pieces = split_clauses(long)
    assert len(pieces) > 10 and all(len(p) <= MAX_CLAUSE_CHARS for p in pieces)
    assert " ".join(pieces) == long


def test_registry_lists_licence_and_provenance_of_every_voice():
    voices = list_voices()
    assert {v.name for v in voices} >= {"joe", "espeak"}
    assert all(v.licence and v.provenance and v.package for v in voices)
    with pytest.raises(UnknownVoice, match="unknown voice 'alloy'.*joe"):
        get_voice("alloy")


def test_piper_round_trip_is_signed_audited_and_never_imports_piper(pipe):
    speech = pipe(TEXT, voice="joe", fmt="wav")
    assert "piper" not in sys.modules   # GPL-3.0: only the voice process imports it
    with wave.open(io.BytesIO(speech.audio)) as w:
        assert w.getframerate() == 22050 and w.getnchannels() == 1 and 3 < w.getnframes() / 22050 < 12
    transcript = transcribe(speech.audio)
    assert heard_share(TEXT, transcript.text) >= 0.7, transcript.text
    starts = [w.start for w in transcript.words]
    assert starts == sorted(starts) and all(w.end > w.start for w in transcript.words)
    # C2PA manifest on the WAV, naming the voice; an audit entry for the exact bytes
    report = read_credentials(speech.audio)
    assert report.state in ("valid", "trusted") and report.manifest_id == speech.manifest_id
    assert report.generation["model"] == "voice:joe" and report.generation["parameters"]["task"] == "speech"
    entries = audit.find(output_sha256=speech.sha256)
    assert len(entries) == 1 and entries[0]["manifest_id"] == speech.manifest_id
    assert speech.verdict["allowed"] is True


def test_warm_voice_process_is_reused_and_streams_clause_by_clause(pipe):
    proc = pipe.voice_process(get_voice("joe"))
    pipe("First call.", voice="joe")
    pid = proc.pid
    text = "One clause here, another clause there; and a last one."
    pieces = list(pipe.stream(text, get_voice("joe"), speed=1.5))
    assert proc.pid == pid and len(pieces) == len(split_clauses(text)) == 3
    assert all(rate == 22050 and len(pcm) > 0.3 * rate for pcm, rate in pieces)


def test_every_openai_format_through_ffmpeg(pipe):
    magic = {"wav": b"RIFF", "mp3": b"ID3", "opus": b"OggS", "flac": b"ID3", "aac": b"\x00\x00\x00"}
    signable = {"wav", "mp3", "flac", "aac"}
    for fmt, (mime, _, c2pa_mime) in FORMATS.items():
        speech = pipe("Hello there, this is a test.", voice="joe", fmt=fmt)
        assert speech.mime == mime
        if fmt == "pcm":   # 24 kHz 16-bit mono, no header
            assert speech.manifest_id is None and abs(len(speech.audio) / 48000 - speech.duration_s) < 0.1
            continue
        assert speech.audio.startswith(magic[fmt]), (fmt, speech.audio[:12])
        if fmt in signable:
            assert read_credentials(speech.audio, mime=c2pa_mime).state in ("valid", "trusted"), fmt
        else:
            assert speech.manifest_id is None
        assert audit.find(output_sha256=speech.sha256)
    mp3 = pipe(TEXT, voice="joe", fmt="mp3")
    assert heard_share(TEXT, transcribe(mp3.audio).text) >= 0.7


def test_espeak_fallback_speaks(pipe):
    speech = pipe("Hello, this is the fallback voice.", voice="espeak", fmt="wav")
    assert speech.duration_s > 1.0 and speech.record.params["engine"] == "espeak-ng"
    assert read_credentials(speech.audio).state in ("valid", "trusted")


def test_bad_input_says_what_to_change(pipe):
    for kwargs, message in [({"text": ""}, "empty"), ({"text": "   \n"}, "empty"), ({"text": "a" * 4001}, "at most"),
                            ({"text": "hi", "voice": "nobody"}, "unknown voice"), ({"text": "hi", "speed": 9.0}, "speed"),
                            ({"text": "hi", "fmt": "ogg"}, "unknown format")]:
        with pytest.raises(ValueError, match=message):
            pipe(**kwargs)


def test_refused_text_is_not_spoken(pipe):
    with pytest.raises(Refused) as e:
        pipe(VIOLENT, voice="joe")
    assert e.value.verdict.blocked and e.value.verdict.category == "violence"
    # the classifier reads only a text's start: a refusable sentence deep inside a long text is still found
    long = "The weather was mild and the market was busy. " * 30 + VIOLENT
    with pytest.raises(Refused):
        pipe(long, voice="joe")


def test_transcription_refuses_unusable_audio(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not audio at all\n" * 20)
    png = tmp_path / "image.wav"   # a misleading name does not help
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = tmp_path / "short.wav"
    silent.write_bytes(wav_bytes(np.zeros(100, np.int16), 16000))
    for path, message in [(tmp_path / "missing.wav", "does not exist"), (text_file, "cannot read"),
                          (png, "cannot read"), (empty, "is empty"), (silent, "audio is empty")]:
        with pytest.raises(AudioError, match=message):
            transcribe(path)
    with pytest.raises(AudioError, match="longer than 1 s"):
        transcribe(wav_bytes(np.zeros(16000 * 3, np.int16), 16000), max_s=1.0)
    with pytest.raises(AudioError, match="bytes; at most"):
        transcribe(bytes(26 * 2**20))


def test_cli_speak_transcribe_and_exit_codes(tmp_path):
    out = tmp_path / "hello.mp3"
    r = runner.invoke(app, ["speak", TEXT, "-o", str(out), "--voice", "joe", "--speed", "1.0"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(b"ID3")
    r = runner.invoke(app, ["transcribe", str(out), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert heard_share(TEXT, result["text"]) >= 0.7 and result["words"][0]["start"] >= 0
    assert runner.invoke(app, ["speak", "hi", "-o", str(tmp_path / "x.wav"), "--voice", "nobody"]).exit_code == 2
    assert runner.invoke(app, ["speak", "", "-o", str(tmp_path / "x.wav")]).exit_code == 2
    assert runner.invoke(app, ["speak", "a " * 2500, "-o", str(tmp_path / "x.wav")]).exit_code == 2
    refused = runner.invoke(app, ["speak", VIOLENT, "-o", str(tmp_path / "x.wav")])
    assert refused.exit_code == 3 and "violence" in refused.output and not (tmp_path / "x.wav").exists()
    assert runner.invoke(app, ["transcribe", str(tmp_path / "missing.wav")]).exit_code == 2
    # an absurd length: eleven minutes of (silent) audio
    long = tmp_path / "long.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "660",
                    str(long)], check=True)
    r = runner.invoke(app, ["transcribe", str(long)])
    assert r.exit_code == 2 and "longer than 600 s" in r.output
