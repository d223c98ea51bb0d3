"""Text to speech: a registered voice speaks screened text clause by clause; the file is signed and audited.

    pipe = SpeechPipeline()
    speech = pipe("Hello there, world.", voice="joe", speed=1.0, fmt="mp3")   # -> Speech (bytes, manifest, ...)
    for pcm in pipe.stream(text, voice="joe"):                                # int16 clauses as they are ready
        ...
    for chunk in pipe.stream_file(text, voice="joe", fmt="pcm"):              # the same, as file bytes (HTTP)
        ...

Piper (GPL-3.0) runs in its own warm process (`PiperProcess`, one per voice, started on first use) that
executes `piper_runner.py`; conjure's process never imports it. espeak-ng is the fallback voice, one
subprocess per clause. Formats other than WAV are encoded by ffmpeg; WAV, MP3, FLAC and AAC (in an M4A
container) carry a C2PA manifest, Opus and raw PCM cannot (c2pa does not sign them) but are audited.
"""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from conjure.pipelines.voices import Voice, check_engine, get_voice, model_hash, model_path
from conjure.safety.verdict import Refused

__all__ = ["FORMATS", "Refused", "SpeechPipeline", "split_clauses"]

MAX_SPEECH_CHARS = 4000         # what one request may say (the safety screen's own limit)
MAX_CLAUSE_CHARS = 240          # longer clauses (no punctuation) are cut at word boundaries
SCREEN_CHUNK_CHARS = 600        # the safety classifier reads ~256 tokens: long texts are screened in pieces
MIN_SPEED, MAX_SPEED = 0.25, 4.0   # OpenAI's range
PAUSE_S = {"sentence": 0.25, "clause": 0.08}
PIPER_THREADS = 1               # onnxruntime threads per voice process: one is faster than two on 2 cores shared
                                # with other work (first clause 245 vs 317 ms median, interleaved runs)
# format -> (MIME type of the file, ffmpeg output arguments, C2PA MIME type or None when c2pa cannot sign it)
FORMATS = {
    "wav": ("audio/wav", None, "audio/wav"),
    "mp3": ("audio/mpeg", ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"], "audio/mpeg"),
    "opus": ("audio/ogg", ["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"], None),
    "aac": ("audio/mp4", ["-c:a", "aac", "-b:a", "96k", "-f", "ipod"], "audio/mp4"),   # M4A: c2pa signs it
    "flac": ("audio/flac", ["-c:a", "flac", "-f", "flac"], "audio/flac"),
    "pcm": ("audio/pcm", ["-ar", "24000", "-f", "s16le"], None),   # OpenAI's pcm: 24 kHz, 16-bit LE, no header
}
STREAM_FORMATS = ("pcm", "wav")  # formats sent clause by clause (the others are encoded and signed whole)
_CLAUSE_BREAK = re.compile(r"(?<=[.!?;:,\u2014])\s+|\s*\n\s*")
_SENTENCE_END = (".", "!", "?", "\n")


def split_clauses(text: str, max_chars: int = MAX_CLAUSE_CHARS) -> list[str]:
    """Clauses to synthesise one at a time: cut after , ; : . ! ? and line breaks; a clause of one or two words
    joins the next (a lone word sounds clipped), and one longer than max_chars is cut between words."""
    parts = [p.strip() for p in _CLAUSE_BREAK.split(text.strip()) if p.strip()]
    merged: list[str] = []
    for p in parts:
        if merged and len(merged[-1].split()) < 3 and not merged[-1].endswith(_SENTENCE_END):
            merged[-1] = f"{merged[-1]} {p}"
        else:
            merged.append(p)
    out = []
    for clause in merged:
        while len(clause) > max_chars:
            cut = clause.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            out.append(clause[:cut].strip())
            clause = clause[cut:].strip()
        if clause:
            out.append(clause)
    return out


class PiperProcess:
    """One warm Piper voice process (piper_runner.py) that speaks one request at a time."""

    RUNNER = Path(__file__).with_name("piper_runner.py")

    def __init__(self, model: Path, threads: int = PIPER_THREADS):
        self.model, self.threads = model, threads
        self.sample_rate = 0
        self.length_scale = 1.0
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._lock = threading.Lock()

    def start(self) -> float:
        """Start the process (a no-op while it runs); returns the seconds it took to be ready."""
        if self._proc is not None and self._proc.poll() is None:
            return 0.0
        t0 = time.perf_counter()
        self._log = tempfile.TemporaryFile()
        # -I: isolated, so the runner sees site-packages only (not conjure's source folder or PYTHONPATH)
        self._proc = subprocess.Popen([sys.executable, "-I", str(self.RUNNER), str(self.model), str(self.threads)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        kind, payload = self._frame()
        if kind != b"H":
            raise RuntimeError(f"the piper voice process did not start: {payload!r}")
        header = json.loads(payload)
        self.sample_rate, self.length_scale = header["sample_rate"], header["length_scale"]
        return time.perf_counter() - t0

    @property
    def pid(self) -> int | None:
        """The voice process's id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _read(self, n: int) -> bytes:
        data = self._proc.stdout.read(n) if n else b""
        if len(data) != n:
            self._log.seek(0)
            err = self._log.read().decode(errors="replace")[-2000:]
            self.close()
            raise RuntimeError(f"the piper voice process stopped: {err.strip() or 'no message'}")
        return data

    def _frame(self) -> tuple[bytes, bytes]:
        kind = self._read(1)
        (n,) = struct.unpack("<I", self._read(4))
        return kind, self._read(n)

    def synthesize(self, text: str, speed: float = 1.0) -> Iterator[bytes]:
        """16-bit mono PCM at `sample_rate`, one piece per sentence piper finds in `text`."""
        with self._lock:
            self.start()
            request = {"text": text, "length_scale": self.length_scale / speed}
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
            done = False
            try:
                while True:
                    kind, payload = self._frame()
                    if kind == b"E":
                        done = True
                        return
                    if kind == b"X":
                        raise RuntimeError(f"piper could not speak the text: {payload.decode(errors='replace')}")
                    yield payload
            finally:
                while not done and self._proc is not None:   # a consumer stopped early: drain this reply
                    done = self._frame()[0] == b"E"

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.stdin.close()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None


def espeak_pcm(text: str, voice: Voice, speed: float = 1.0) -> tuple[bytes, int]:
    """(16-bit mono PCM, sample rate) from espeak-ng; the text goes on stdin, never as an argument."""
    words_per_min = int(min(max(175 * speed, 80), 450))   # espeak-ng's own limits
    proc = subprocess.run(["espeak-ng", "--stdout", "-v", voice.espeak_voice, "-s", str(words_per_min)],
                          input=text.encode(), capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed: {proc.stderr.decode(errors='replace')[-500:]}")
    data = proc.stdout
    rate = struct.unpack("<I", data[24:28])[0]
    start = data.find(b"data") + 8   # the streamed header's sizes are placeholders: take all that follows
    return data[start:], rate


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def wav_stream_header(sample_rate: int) -> bytes:
    """A mono 16-bit WAV header for a stream of unknown length (sizes 0xFFFFFFFF, as streaming servers write)."""
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16) +
            b"data" + struct.pack("<I", 0xFFFFFFFF))


def encode(pcm: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """The audio as a file in one of FORMATS (ffmpeg for all but WAV)."""
    wav = wav_bytes(pcm, sample_rate)
    args = FORMATS[fmt][1]
    if args is None:
        return wav
    with tempfile.TemporaryDirectory() as tmp:   # a file, not a pipe: the M4A muxer seeks back to write its index
        out = Path(tmp) / f"out.{fmt}"
        proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0", *args, "-y", str(out)],
                              input=wav, capture_output=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not encode {fmt}: {proc.stderr.decode(errors='replace')[-500:]}")
        return out.read_bytes()


def speech_record(text: str, v: Voice, speed: float, fmt: str, verdict, user: str, job_id: str | None,
                  **extra):
    """The provenance record of one spoken output (the file's, or a stream's)."""
    from conjure.provenance.record import GenerationRecord, new_job_id
    return GenerationRecord(text, f"voice:{v.name}", model_hash(v.name), 0,
                            {"task": "speech", "voice": v.name, "engine": v.engine, "speed": speed, "format": fmt,
                             "licence": v.licence, **extra},
                            job_id=job_id or new_job_id(), user=user, verdicts=[verdict.to_dict()],
                            policy_version=verdict.policy_version)


@dataclass
class Speech:
    """One spoken output with its provenance."""

    audio: bytes                 # the final file (signed where c2pa can sign its format)
    fmt: str
    mime: str
    sample_rate: int             # of the synthesised audio (pcm is delivered at 24 kHz)
    duration_s: float
    sha256: str                  # of `audio`: the audit entry's output_sha256
    manifest_id: str | None      # None for formats c2pa cannot sign (opus, pcm) or when signing is off
    verdict: dict                # the text screening verdict
    record: object = None        # the provenance GenerationRecord
    timings: dict[str, float] = field(default_factory=dict)


class SpeechPipeline:
    """Screen → synthesise clause by clause → encode → sign → audit; voice processes stay warm between calls."""

    def __init__(self, policy=None, sign: bool = True, audit: bool = True):
        self.policy = policy
        self.sign, self.audit = sign, audit
        self._piper: dict[str, PiperProcess] = {}
        self._lock = threading.Lock()

    def check(self, text: str, voice: str | None, speed: float, fmt: str) -> tuple[str, Voice]:
        """Validate a request; raises ValueError (UnknownVoice for an unregistered voice) saying what to change."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the text is empty: give something to say")
        if len(text) > MAX_SPEECH_CHARS:
            raise ValueError(f"the text has {len(text)} characters; at most {MAX_SPEECH_CHARS} can be spoken "
                             "in one request: split it")
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
        if fmt not in FORMATS:
            raise ValueError(f"unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
        v = get_voice(voice)
        check_engine(v)
        return text.strip(), v

    def screen(self, text: str):
        """The strictest verdict over the text's pieces (the classifier reads only the start of a long text)."""
        from conjure.safety import load_policy, screen_prompts
        from conjure.safety.policy import ACTION_RANK
        policy = self.policy or load_policy()
        pieces, piece = [], ""
        for clause in split_clauses(text):
            if piece and len(piece) + len(clause) > SCREEN_CHUNK_CHARS:
                pieces.append(piece)
                piece = ""
            piece = f"{piece} {clause}".strip()
        pieces.append(piece)
        verdicts = screen_prompts(pieces, policy)
        return max(verdicts, key=lambda v: (ACTION_RANK[v.action], v.score))

    def voice_process(self, voice: Voice) -> PiperProcess:
        with self._lock:
            proc = self._piper.get(voice.name)
            if proc is None:
                proc = self._piper[voice.name] = PiperProcess(model_path(voice))
        return proc

    def warm(self, voice: str | None = None) -> float:
        """Start a piper voice's process now; returns its start-up seconds (0 when already warm)."""
        v = get_voice(voice)
        return self.voice_process(v).start() if v.engine == "piper" else 0.0

    def stream(self, text: str, voice: Voice, speed: float = 1.0) -> Iterator[tuple[np.ndarray, int]]:
        """(int16 samples, sample rate) per clause, each followed by its pause, as soon as it is spoken.
        The caller checks and screens the text first (`__call__` does)."""
        for clause in split_clauses(text):
            if voice.engine == "piper":
                proc = self.voice_process(voice)
                pcm = b"".join(proc.synthesize(clause, speed))
                rate = proc.sample_rate
            else:
                pcm, rate = espeak_pcm(clause, voice, speed)
            pause = PAUSE_S["sentence" if clause.endswith(_SENTENCE_END) else "clause"] / speed
            yield np.concatenate([np.frombuffer(pcm, "<i2"), np.zeros(int(rate * pause), np.int16)]), rate

    def __call__(self, text: str, voice: str | None = None, speed: float = 1.0, fmt: str = "wav",
                 user: str = "", job_id: str | None = None) -> Speech:
        from conjure.provenance.record import sha256_hex
        timings = {}
        # 1. check inputs
        text, v = self.check(text, voice, speed, fmt)
        # 2. screen the text under the content policy (a refusal stops here, with its verdict)
        t = time.perf_counter()
        verdict = self.screen(text)
        timings["screen"] = time.perf_counter() - t
        if verdict.blocked:
            raise Refused(verdict, "text")
        # 3. synthesise clause by clause
        t = time.perf_counter()
        pieces = list(self.stream(text, v, speed))
        rate = pieces[0][1]
        pcm = np.concatenate([p for p, _ in pieces])
        timings["synthesize"] = time.perf_counter() - t
        # 4. encode
        t = time.perf_counter()
        audio = encode(pcm, rate, fmt)
        timings["encode"] = time.perf_counter() - t
        # 5. provenance: C2PA manifest where the format allows one, then the audit entry
        mime, _, c2pa_mime = FORMATS[fmt]
        record = speech_record(text, v, speed, fmt, verdict, user, job_id)
        manifest_id = None
        t = time.perf_counter()
        if self.sign and c2pa_mime:
            from conjure.provenance.credentials import sign_bytes
            audio, manifest_id = sign_bytes(audio, c2pa_mime, record, title=f"speech.{'m4a' if fmt == 'aac' else fmt}")
        timings["sign"] = time.perf_counter() - t
        digest = sha256_hex(audio)
        if self.audit:
            from conjure.provenance import audit
            audit.append(record, digest, manifest_id or "")
        return Speech(audio, fmt, mime, rate, len(pcm) / rate, digest, manifest_id, verdict.to_dict(), record,
                      timings)

    def stream_file(self, text: str, voice: str | None = None, speed: float = 1.0, fmt: str = "pcm",
                    user: str = "", job_id: str | None = None) -> Iterator[bytes]:
        """The spoken file as byte chunks, one per clause as soon as it is synthesised (STREAM_FORMATS only):
        `pcm` as OpenAI streams it (24 kHz, 16-bit), `wav` with a header whose sizes say "unknown length".
        Checking and screening happen before the first chunk (a ValueError or Refused then, no bytes); a
        streamed file carries no C2PA manifest (one can only sign a whole file) but is audited once its last
        chunk is out. Call `next()` once to run the checks before committing to a response."""
        if fmt not in STREAM_FORMATS:
            raise ValueError(f"streaming is available for {', '.join(STREAM_FORMATS)}, not '{fmt}'")
        text, v = self.check(text, voice, speed, fmt)
        verdict = self.screen(text)
        if verdict.blocked:
            raise Refused(verdict, "text")
        return self._stream_chunks(text, v, speed, fmt, verdict, user, job_id)

    def _stream_chunks(self, text, v, speed, fmt, verdict, user, job_id) -> Iterator[bytes]:
        import hashlib
        digest, seconds = hashlib.sha256(), 0.0
        for i, (pcm, rate) in enumerate(self.stream(text, v, speed)):
            if fmt == "pcm":
                chunk = encode(pcm, rate, "pcm")
            else:
                chunk = (wav_stream_header(rate) if i == 0 else b"") + pcm.astype("<i2").tobytes()
            digest.update(chunk)
            seconds += len(pcm) / rate
            yield chunk
        record = speech_record(text, v, speed, fmt, verdict, user, job_id,
                               streamed=True, duration_s=round(seconds, 3))
        if self.audit:
            from conjure.provenance import audit
            audit.append(record, digest.hexdigest(), "")

    def close(self) -> None:
        for proc in self._piper.values():
            proc.close()
        self._piper.clear()


_default: SpeechPipeline | None = None
_default_lock = threading.Lock()


def default_pipeline() -> SpeechPipeline:
    """The process's shared pipeline (the API's): its voice processes stay warm across requests."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SpeechPipeline()
        return _default
