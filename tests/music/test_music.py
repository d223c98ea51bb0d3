"""The melody model's tokens, prompt parsing, MIDI and audio rendering, training and generation, the pipeline
(screening, C2PA, audit) and `conjure compose`."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import mido
import pytest
import torch

from conjure.music import tokens as T
from conjure.music.corpus import TICKS, Piece
from conjure.music.prompt import parse_prompt
from conjure.music.render import beat_quarters, render, to_midi

from ..conftest import synthetic_tunes

JIG = [[(62, 12), (64, 6), (66, 12), (67, 6)], [(69, 18), (-1, 6), (71, 12)]]


# --- tokens

def test_encode_decode_round_trip_and_header():
    cond = T.Condition("jig", "6/8", 2, "major")
    ids = T.encode(cond, JIG)
    assert ids[:T.HEADER] == [T.BOS, T.INDEX["STYLE_jig"], T.INDEX["METER_6/8"], T.INDEX["KEY_D_major"]]
    assert ids[-1] == T.EOS and ids.count(T.BAR) == 2
    assert T.decode(ids) == JIG


def test_transpose_moves_key_with_notes_and_refuses_out_of_range():
    piece = Piece("t", "x", "x", "train", "jig", "6/8", 2, "major", JIG)
    up = T.decode(T.encode_piece(piece, 3))
    assert up == [[(p + 3 if p >= 0 else -1, d) for p, d in bar] for bar in JIG]
    assert T.encode_piece(piece, 3)[3] == T.INDEX["KEY_F_major"]
    assert T.transpose([[(95, 12)]], 5) is None


@pytest.mark.parametrize("bad", [dict(style="polonaise"), dict(meter="5/4"), dict(mode="dorian"), dict(tonic=12)])
def test_condition_rejects_what_the_model_does_not_know(bad):
    args = dict(style="jig", meter="6/8", tonic=2, mode="major") | bad
    with pytest.raises(ValueError, match="choose from|tonic is 0-11"):
        T.Condition(**args).tokens()


def test_decode_drops_an_event_without_duration_and_stops_at_eos():
    ids = [T.BAR, T.INDEX["P62"], T.INDEX["D12"], T.INDEX["P64"], T.EOS, T.BAR, T.INDEX["P60"], T.INDEX["D6"]]
    assert T.decode(ids) == [[(62, 12)]]


# --- prompt

@pytest.mark.parametrize("prompt,style,meter,key,instrument", [
    ("a lively jig in D major", "jig", "6/8", "D major", "fiddle"),
    ("a sad waltz", "waltz", "3/4", "A minor", "accordion"),
    ("a slow air in the key of b flat on the harp", "air", "3/4", "Bb major", "harp"),
    ("played in a pub: a hornpipe in G", "hornpipe", "4/4", "G major", "fiddle"),
    ("a mournful march in E", "march", "2/4", "E minor", "flute"),
    ("a Bach chorale in F# minor", "chorale", "4/4", "F# minor", "organ"),
    ("a reel in 2/2", "reel", "2/2", "D major", "fiddle"),
])
def test_prompt_words_become_settings(prompt, style, meter, key, instrument):
    r = parse_prompt(prompt)
    assert (r.style, r.meter, r.key_name, r.instrument) == (style, meter, key, instrument)
    assert set(r.explain) == {"style", "key", "meter", "tempo", "instrument"}


def test_mood_changes_tempo_and_explicit_values_win():
    plain, lively, sad = (parse_prompt(p).tempo_bpm for p in ("a jig", "a lively jig", "a sad jig"))
    assert sad < plain < lively
    assert parse_prompt("a jig at 90 bpm, 8 bars").tempo_bpm == 90
    assert parse_prompt("a jig, 8 bars").bars == 8
    r = parse_prompt("a sad jig in D major", key="G minor", meter="9/8", tempo=70, instrument="piano", bars=12)
    assert (r.key_name, r.meter, r.tempo_bpm, r.instrument, r.program, r.bars) == ("G minor", "9/8", 70, "piano", 0, 12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=""), "empty"), (dict(prompt="x" * 501), "at most"), (dict(prompt="a jig in 5/4"), "5/4"),
    (dict(prompt="a jig", bars=200), "bars"), (dict(prompt="a jig", tempo=900), "tempo"),
    (dict(prompt="a jig", instrument="theremin"), "unknown instrument"), (dict(prompt="a jig", key="H major"), "cannot read key"),
])
def test_bad_prompts_and_settings_say_what_to_change(kwargs, match):
    with pytest.raises(ValueError, match=match):
        parse_prompt(**kwargs)


# --- MIDI and audio

def test_midi_holds_notes_meter_key_and_tempo_in_beats():
    data = to_midi(JIG, tempo_bpm=100, program=40, meter="6/8", tonic=2, mode="major")
    mid = mido.MidiFile(file=io.BytesIO(data))
    metas = {m.type: m for m in mid.tracks[0]}
    assert (metas["time_signature"].numerator, metas["time_signature"].denominator) == (6, 8)
    assert metas["key_signature"].key == "D"
    assert mido.tempo2bpm(metas["set_tempo"].tempo) == pytest.approx(150)   # 100 dotted quarters = 150 quarters
    notes = [m for m in mid.tracks[1] if m.type == "note_on"]
    assert [m.note for m in notes] == [p for bar in JIG for p, _ in bar if p >= 0]
    assert any(m.type == "program_change" and m.program == 40 for m in mid.tracks[1])
    total_ticks = sum(m.time for m in mid.tracks[1])
    assert total_ticks == sum(d for bar in JIG for _, d in bar) * (mid.ticks_per_beat // TICKS)
    assert beat_quarters("2/2") == 2 and beat_quarters("3/4") == 1


def test_rendered_audio_lasts_as_long_as_the_music():
    pcm = render(to_midi(JIG, tempo_bpm=120, program=0, meter="4/4"))
    quarters = sum(d for bar in JIG for _, d in bar) / TICKS
    assert len(pcm) / 44100 == pytest.approx(quarters * 0.5 + 1.0, abs=0.6)   # + the release tail
    assert abs(pcm.astype(int)).max() > 1000


# --- training and generation

def test_training_lowers_loss_and_resumes(tmp_path):
    from conjure.music.train import load_model, perplexity, train
    tunes = synthetic_tunes()
    assert train(tmp_path, steps=60, preset="test", pieces=tunes, val_pieces=tunes[:4], max_minutes=0) is None
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 0
    out = train(tmp_path, steps=60, preset="test", pieces=tunes, val_pieces=tunes[:4])
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert rows[-1]["step"] == 60 and "val" in rows[-1] and len(losses) == 2 and losses[1] < losses[0]
    assert perplexity(load_model(out), tunes[:4])["perplexity"] < len(T.VOCAB) / 4


def test_generation_is_well_formed_and_seeded(tiny_music_model):
    from conjure.music.train import load_model
    model = load_model(tiny_music_model)
    cond = T.Condition("waltz", "3/4", 9, "minor")
    a = model.generate(cond, 6, torch.Generator().manual_seed(1))
    b = model.generate(cond, 6, torch.Generator().manual_seed(1))
    assert a == b and a[:T.HEADER] == cond.tokens() and a[T.HEADER] == T.BAR
    body = a[T.HEADER:]
    for prev, nxt in zip(body, body[1:]):                   # every event is followed by its duration
        assert (nxt in T.DUR_IDS) == (prev == T.REST or prev in T.PITCH_IDS)
    assert 1 <= body.count(T.BAR) <= 6


def test_strict_bars_fill_every_bar_after_the_pickup(tiny_music_model):
    from conjure.music.analysis import bar_ticks
    from conjure.music.train import load_model
    model = load_model(tiny_music_model)
    for seed, (style, meter) in enumerate([("jig", "6/8"), ("waltz", "3/4"), ("reel", "4/4"), ("slip jig", "9/8")]):
        ids = model.generate(T.Condition(style, meter, 2, "major"), 6, torch.Generator().manual_seed(seed),
                             strict_bars=True)
        lengths = [sum(d for _, d in bar) for bar in T.decode(ids)]
        assert lengths[0] <= bar_ticks(meter)                       # a pickup, or a full first bar
        assert all(n == bar_ticks(meter) for n in lengths[1:-1]), (meter, lengths)
        assert lengths[-1] <= bar_ticks(meter)                     # full, or cut by the tiny model's context


def test_key_bias_favours_the_asked_keys_pitches_and_is_off_at_zero():
    from conjure.music.model import key_bias
    n = len(T.VOCAB)
    assert not key_bias(T.Condition("jig", "6/8", 0, "major"), n, 0.0).any()
    c_major = key_bias(T.Condition("jig", "6/8", 0, "major"), n, 1.5)
    p = lambda midi: T.INDEX[f"P{midi}"]                          # noqa: E731
    assert c_major[p(60)] > c_major[p(67)] > c_major[p(64)] > 0 > c_major[p(61)]     # C > G > E > C#
    assert c_major[p(60)] == c_major[p(72)]                                          # octave-invariant
    assert not c_major[[T.BAR, T.REST, *T.DUR_IDS]].any()                             # pitches only
    a_minor = key_bias(T.Condition("jig", "6/8", 9, "minor"), n, 1.5)
    assert a_minor[p(69)] > c_major[p(69)] and a_minor[p(60)] < c_major[p(60)]       # A is the tonic now


def test_key_guidance_moves_the_notes_into_the_key(tiny_music_model):
    from conjure.music.train import load_model
    model = load_model(tiny_music_model)
    scale = {6, 8, 10, 11, 1, 3, 5}                                 # F# major's pitch classes
    def in_scale(g: float) -> float:
        notes = [p for seed in range(6) for bar in T.decode(model.generate(
            T.Condition("reel", "4/4", 6, "major"), 6, torch.Generator().manual_seed(seed), key_guidance=g))
            for p, _ in bar if p >= 0]
        return sum(p % 12 in scale for p in notes) / len(notes)
    assert in_scale(4.0) > in_scale(0.0) + 0.15


# --- pipeline and CLI

def test_pipeline_screens_signs_and_audits_audio_and_midi(tiny_music_model):
    from conjure.music.pipeline import MusicPipeline
    from conjure.provenance import audit
    from conjure.provenance.credentials import read_credentials
    from conjure.safety.verdict import Refused
    pipe = MusicPipeline(tiny_music_model)
    music = pipe("a lively jig in D major on the fiddle, 4 bars", seed=3, fmt="wav")
    assert music.audio[:4] == b"RIFF" and music.midi[:4] == b"MThd" and music.duration_s > 1
    assert read_credentials(music.audio, mime="audio/wav").state in ("trusted", "valid")
    for digest in (music.sha256, music.midi_sha256):
        assert [e["job_id"] for e in audit.find(output_sha256=digest)] == [music.record.job_id]
    assert music.request.meter == "6/8" and len(music.measures) <= 4
    with pytest.raises(Refused):
        pipe("a jig for a massacre in the street, bodies everywhere")
    with pytest.raises(ValueError, match="unknown format"):
        pipe("a jig", fmt="midi")
    with pytest.raises(ValueError, match="key_guidance"):
        pipe("a jig", key_guidance=9)


def test_compose_cli_writes_audio_and_midi_and_refuses_bad_input(tiny_music_model, tmp_path, monkeypatch):
    env = {**__import__("os").environ, "CONJURE_MUSIC_MODEL": str(tiny_music_model)}
    out, midi = tmp_path / "tune.mp3", tmp_path / "tune.mid"
    run = subprocess.run([sys.executable, "-m", "conjure.cli", "compose", "a waltz in A minor, 4 bars", "-o", str(out),
                          "--midi", str(midi), "--seed", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3") and midi.read_bytes()[:4] == b"MThd"
    assert "3/4" in run.stdout and "A minor" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "conjure.cli", "compose", "a jig", "--key", "H major", "-o",
                          str(tmp_path / "x.wav")], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "key" in bad.stderr.lower() and not (tmp_path / "x.wav").exists()
