"""Speech to text with pocketsphinx (US English; its acoustic and language models ship inside the wheel).

    transcript = transcribe(Path("speech.mp3"))      # or bytes
    transcript.text, transcript.words                # words carry start and end times in seconds

ffmpeg decodes any audio format to 16 kHz mono first; a file it cannot read as audio, an empty one and
one longer than MAX_AUDIO_S are refused with an AudioError (a ValueError) that says what to change.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000                # what the pocketsphinx en-us model expects
MAX_AUDIO_S = 600.0                # ten minutes per request
MAX_AUDIO_BYTES = 25 * 2**20       # OpenAI's upload limit
MIN_AUDIO_S = 0.1
_FILLERS = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
_decoder = None
_decoder_lock = threading.Lock()


class AudioError(ValueError):
    """The input is not usable audio (unreadable, not audio, empty, too long)."""


@dataclass
class Word:
    word: str
    start: float                     # seconds
    end: float


@dataclass
class Transcript:
    text: str
    duration_s: float
    words: list[Word] = field(default_factory=list)
    language: str = "en"

    def to_dict(self) -> dict:
        return {"text": self.text, "language": self.language, "duration": round(self.duration_s, 3),
                "words": [asdict(w) for w in self.words]}


def decode_audio(source: Path | bytes, max_s: float = MAX_AUDIO_S) -> np.ndarray:
    """16 kHz mono int16 samples of any audio file ffmpeg reads; AudioError when there is none to read."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) > MAX_AUDIO_BYTES:
            raise AudioError(f"the audio is {len(source)} bytes; at most {MAX_AUDIO_BYTES} are accepted")
        with tempfile.NamedTemporaryFile(suffix=".audio") as f:   # a file: some containers need to seek
            f.write(source)
            f.flush()
            return decode_audio(Path(f.name), max_s)
    path = Path(source)
    if not path.is_file():
        raise AudioError(f"'{path}' does not exist or is not a file")
    if path.stat().st_size == 0:
        raise AudioError(f"'{path}' is empty: give an audio file (WAV, MP3, FLAC, Opus, M4A, ...)")
    # decode one sample past the limit: more than max_s of output means the input is too long
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-t", f"{max_s + 0.01:.2f}",
           "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise AudioError("ffmpeg is not installed: sudo apt-get install ffmpeg (make system-deps)") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"cannot read '{path.name}' as audio ({why[-1] if why else 'ffmpeg failed'}); "
                         "give a WAV, MP3, FLAC, Opus or M4A file")
    samples = np.frombuffer(proc.stdout, "<i2")
    if len(samples) > max_s * SAMPLE_RATE:
        raise AudioError(f"the audio is longer than {max_s:.0f} s, the most one request may transcribe: cut it")
    if len(samples) < MIN_AUDIO_S * SAMPLE_RATE:
        raise AudioError(f"the audio is empty (shorter than {MIN_AUDIO_S} s): nothing to transcribe")
    return samples


def _get_decoder():
    global _decoder
    if _decoder is None:
        from pocketsphinx import Decoder   # the packaged en-us model, loaded once per process
        _decoder = Decoder(loglevel="FATAL")
    return _decoder


def transcribe(source: Path | bytes, max_s: float = MAX_AUDIO_S) -> Transcript:
    """Words and their times in an audio file (path or bytes)."""
    samples = decode_audio(source, max_s)
    with _decoder_lock:   # one decoder, one utterance at a time
        decoder = _get_decoder()
        frame_s = 1.0 / decoder.config["frate"]
        decoder.start_utt()
        decoder.process_raw(samples.tobytes(), full_utt=True)
        decoder.end_utt()
        segments = [(s.word, s.start_frame, s.end_frame) for s in decoder.seg()]
    words = [Word(re.sub(r"\(\d+\)$", "", w), round(a * frame_s, 3), round((b + 1) * frame_s, 3))
             for w, a, b in segments if not _FILLERS.match(w)]
    return Transcript(" ".join(w.word for w in words), len(samples) / SAMPLE_RATE, words)
