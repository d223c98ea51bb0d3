"""Melody -> Standard MIDI File (mido) -> audio (FluidSynth with a General MIDI soundfont, as a subprocess).

The MIDI file carries the tempo, the time and key signatures, and the instrument as a program change. Debian's
`fluidsynth` and `fluid-soundfont-gm` (FluidR3_GM, MIT licence) are installed by `make setup`; another
soundfont can be set with CONJURE_SOUNDFONT.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from conjure.music.corpus import TICKS
from conjure.music.tokens import NOTE_NAMES

PPQ = 480                                # MIDI ticks per quarter
SAMPLE_RATE = 44100
SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))
TAIL_S = 1.0                             # kept after the last note ends (its release rings out)
FADE_S = 0.3                             # then faded out


def beat_quarters(meter: str) -> float:
    """The meter's beat in quarter notes: a dotted quarter in 3/8, 6/8, 9/8, 12/8; a half note in x/2."""
    num, den = (int(x) for x in meter.split("/"))
    if den == 8 and num % 3 == 0:
        return 1.5
    return 4 / den


def to_midi(measures: list[list[tuple[int, int]]], tempo_bpm: int, program: int, meter: str = "4/4",
            tonic: int | None = None, mode: str = "major", velocity: int = 84) -> bytes:
    """A melody as a type-1 MIDI file (bytes): a conductor track (tempo, meter, key) and one melody track.
    tempo_bpm counts the meter's beats (`beat_quarters`); MIDI's tempo counts quarter notes."""
    import mido

    scale = PPQ // TICKS
    num, den = (int(x) for x in meter.split("/"))
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm * beat_quarters(meter))),
                                mido.MetaMessage("time_signature", numerator=num, denominator=den)])
    if tonic is not None:
        conductor.append(mido.MetaMessage("key_signature", key=NOTE_NAMES[tonic] + ("m" if mode == "minor" else "")))
    melody = mido.MidiTrack([mido.MetaMessage("track_name", name="melody"),
                             mido.Message("program_change", program=program, channel=0)])
    wait = 0
    for bar in measures:
        for pitch, dur in bar:
            if pitch < 0:
                wait += dur * scale
                continue
            melody.append(mido.Message("note_on", note=pitch, velocity=velocity, time=wait, channel=0))
            melody.append(mido.Message("note_off", note=pitch, velocity=0, time=dur * scale, channel=0))
            wait = 0
    melody.append(mido.MetaMessage("end_of_track", time=wait))
    mid = mido.MidiFile(type=1, ticks_per_beat=PPQ, tracks=[conductor, melody])
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def soundfont() -> Path:
    configured = os.environ.get("CONJURE_SOUNDFONT")
    for path in ([Path(configured)] if configured else []) + list(SOUNDFONTS):
        if path.is_file():
            return path
    raise RuntimeError("no General MIDI soundfont found: install Debian's fluid-soundfont-gm (`make setup` does), "
                       "or set CONJURE_SOUNDFONT to an .sf2 file")


def render(midi: bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MIDI bytes -> mono int16 samples at sample_rate, rendered by FluidSynth (no audio device used)."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RuntimeError("fluidsynth is not installed: `make setup` installs it (Debian package fluidsynth)")
    with tempfile.TemporaryDirectory() as tmp:
        mid, out = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        proc = subprocess.run([exe, "-ni", "-q", "-g", "0.6", "-r", str(sample_rate), "-F", str(out), "-T", "wav",
                               str(soundfont()), str(mid)], capture_output=True, timeout=300)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"fluidsynth failed: {proc.stderr.decode(errors='replace')[-400:]}")
        with wave.open(str(out)) as w:
            channels, width, frames = w.getnchannels(), w.getsampwidth(), w.readframes(w.getnframes())
    if width != 2:
        raise RuntimeError(f"fluidsynth wrote {8 * width}-bit audio; expected 16-bit")
    pcm = np.frombuffer(frames, "<i2").reshape(-1, channels).astype(np.float32).mean(1)
    import mido
    end = int((mido.MidiFile(file=io.BytesIO(midi)).length + TAIL_S) * sample_rate)   # FluidSynth renders
    pcm = np.concatenate([pcm, np.zeros(max(0, end - len(pcm)), np.float32)])[:end]   # reverb for seconds more
    fade = min(len(pcm), int(FADE_S * sample_rate))
    pcm[len(pcm) - fade:] *= np.linspace(1.0, 0.0, fade)
    return np.clip(pcm, -32768, 32767).astype(np.int16)
