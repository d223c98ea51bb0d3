"""Text to music: screen the prompt → parse it into a request → sample a melody → MIDI → FluidSynth → encode
→ sign (C2PA where the format allows) → audit the audio and the MIDI file.

    pipe = MusicPipeline()
    piece = pipe("a lively jig in D major", seed=0, fmt="wav")    # -> Music (audio, midi, request, ...)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from conjure.config import BUILTIN_MODELS_DIR
from conjure.music.prompt import KEY_GUIDANCE, MAX_KEY_GUIDANCE, MusicRequest, parse_prompt
from conjure.music.tokens import Condition, decode
from conjure.pipelines.speech import FORMATS, encode
from conjure.safety.verdict import Refused

MODEL_NAME = "conjure-music"
MODEL_DIR = BUILTIN_MODELS_DIR / MODEL_NAME
MAX_SEED = 2**32 - 1


@dataclass
class Music:
    audio: bytes                 # the final file (signed where c2pa can sign its format)
    midi: bytes                  # the Standard MIDI File the audio was rendered from
    fmt: str
    mime: str
    duration_s: float
    request: MusicRequest
    measures: list              # the melody: bars of (pitch, ticks)
    sha256: str
    midi_sha256: str
    manifest_id: str | None
    verdict: dict
    record: object = None
    timings: dict[str, float] = field(default_factory=dict)


def model_hash(folder: Path = MODEL_DIR) -> str:
    from conjure.provenance.record import sha256_hex
    return sha256_hex((Path(folder) / "weights.safetensors").read_bytes())[:10]


class MusicPipeline:
    """Holds the melody model (loaded on first use); thread-safe; one melody at a time per pipeline."""

    def __init__(self, model_dir: Path | None = None, policy=None, sign: bool = True, audit: bool = True):
        from conjure.config import get_settings
        self.model_dir = Path(model_dir or get_settings().music_model or MODEL_DIR)
        self.policy, self.sign, self.audit = policy, sign, audit
        self._model, self._hash = None, None
        self._load_lock, self._run_lock = threading.Lock(), threading.Lock()

    @property
    def model(self):
        with self._load_lock:
            if self._model is None:
                from conjure.music.train import load_model
                self._model = load_model(self.model_dir)
                self._hash = model_hash(self.model_dir)      # once, with the weights it names
            return self._model

    def screen(self, prompt: str):
        from conjure.safety import load_policy, screen_prompts
        return screen_prompts([prompt], self.policy or load_policy())[0]

    def compose(self, request: MusicRequest, seed: int = 0, temperature: float = 1.0, top_p: float = 0.95,
                strict_bars: bool = True, key_guidance: float = KEY_GUIDANCE) -> list[list[tuple[int, int]]]:
        """Sample the melody for a request (bit-identical for the same seed on the same machine). With
        strict_bars (the default) every bar after a pickup holds exactly the meter's length (see
        MelodyTransformer.generate); without it, bar lengths are the model's alone. key_guidance weights a
        key-profile prior on pitches (0 = the model alone)."""
        if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
        if not 0.1 <= temperature <= 2.0 or not 0.1 <= top_p <= 1.0:
            raise ValueError("temperature must be in 0.1..2.0 and top_p in 0.1..1.0")
        if not 0.0 <= key_guidance <= MAX_KEY_GUIDANCE:
            raise ValueError(f"key_guidance must be in 0..{MAX_KEY_GUIDANCE} (0 = the model alone), got {key_guidance}")
        gen = torch.Generator().manual_seed(seed)
        cond = Condition(request.style, request.meter, request.tonic, request.mode)
        with self._run_lock:
            ids = self.model.generate(cond, request.bars, gen, temperature, top_p, strict_bars=strict_bars,
                                      key_guidance=key_guidance)
        return decode(ids)

    def __call__(self, prompt: str, seed: int = 0, fmt: str = "wav", bars: int | None = None,
                 tempo: int | None = None, key: str | None = None, meter: str | None = None,
                 instrument: str | None = None, temperature: float = 1.0, strict_bars: bool = True,
                 key_guidance: float = KEY_GUIDANCE, user: str = "", job_id: str | None = None) -> Music:
        from conjure.music.render import SAMPLE_RATE, render, to_midi
        from conjure.provenance.record import GenerationRecord, new_job_id, sha256_hex
        timings = {}
        if fmt not in FORMATS:
            raise ValueError(f"unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
        request = parse_prompt(prompt, bars=bars, tempo=tempo, key=key, meter=meter, instrument=instrument)
        t = time.perf_counter()
        verdict = self.screen(prompt)
        timings["screen"] = time.perf_counter() - t
        if verdict.blocked:
            raise Refused(verdict, "prompt")
        t = time.perf_counter()
        measures = self.compose(request, seed, temperature, strict_bars=strict_bars, key_guidance=key_guidance)
        timings["compose"] = time.perf_counter() - t
        t = time.perf_counter()
        midi = to_midi(measures, request.tempo_bpm, request.program, request.meter, request.tonic, request.mode)
        midi_sha256 = sha256_hex(midi)
        pcm = render(midi)
        audio = encode(pcm, SAMPLE_RATE, fmt)
        timings["render"] = time.perf_counter() - t
        mime, _, c2pa_mime = FORMATS[fmt]
        params = {"task": "music", "format": fmt, "temperature": temperature, "strict_bars": strict_bars,
                  "key_guidance": key_guidance,
                  **request.to_dict()}
        params.pop("explain")
        record = GenerationRecord(prompt, MODEL_NAME, self._hash, seed, params | {"midi_sha256": midi_sha256},
                                  job_id=job_id or new_job_id(),
                                  user=user, verdicts=[verdict.to_dict()], policy_version=verdict.policy_version)
        manifest_id = None
        if self.sign and c2pa_mime:
            from conjure.provenance.credentials import sign_bytes
            audio, manifest_id = sign_bytes(audio, c2pa_mime, record,
                                            title=f"music.{'m4a' if fmt == 'aac' else fmt}")
        digest = sha256_hex(audio)
        if self.audit:
            from conjure.provenance import audit
            audit.append(record, digest, manifest_id or "")
            audit.append(record, midi_sha256, "")                # the MIDI file is an output too
        return Music(audio, midi, fmt, mime, len(pcm) / SAMPLE_RATE, request, measures, digest, midi_sha256,
                     manifest_id, verdict.to_dict(), record, timings)

