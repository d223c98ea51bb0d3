"""`conjure compose` (text to music) and `conjure music data|train|evaluate` (the melody model's corpus,
training and measurements)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from conjure.music.prompt import KEY_GUIDANCE

music_app = typer.Typer(help="The melody model: corpus, training and evaluation.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> None:
    from conjure.cli import fail      # the CLI's one error exit; imported late: cli imports this module
    fail(message, code)


def compose(
    prompt: Annotated[str, typer.Argument(help="e.g. 'a lively jig in D major on the fiddle'.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Audio file.")] = Path("tune.wav"),
    midi: Annotated[Optional[Path], typer.Option("--midi", help="Also write the MIDI file here.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed (same seed, same tune).")] = 0,
    bars: Annotated[Optional[int], typer.Option(help="Bars, 4-64 (default 16, or 'N bars' in the prompt).")] = None,
    tempo: Annotated[Optional[int], typer.Option(help="Beats per minute (default: from style and mood).")] = None,
    key: Annotated[Optional[str], typer.Option(help="e.g. 'D major', 'E minor', 'F#m' (beats the prompt).")] = None,
    meter: Annotated[Optional[str], typer.Option(help="e.g. 6/8 (beats the prompt and the style).")] = None,
    instrument: Annotated[Optional[str], typer.Option(help="e.g. fiddle, piano, flute, organ, harp.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature, 0.1-2.0.")] = 1.0,
    key_guidance: Annotated[float, typer.Option(help="Weight of the key's pitch profile in sampling, 0-4 "
                                                     "(0 = the model alone).")] = KEY_GUIDANCE,
    free_bars: Annotated[bool, typer.Option("--free-bars", help="Let the model end bars where it likes (default: "
                                                                "every bar after a pickup is filled to the meter).")]
    = False,
    fmt: Annotated[Optional[str], typer.Option("--format", help="wav, mp3, opus, aac (M4A), flac or pcm "
                                                                "(default: from the file name, else wav).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Print the request and where each setting came from.")]
    = False,
) -> None:
    """Compose a melody from a text prompt and render it with a General MIDI instrument. The prompt is screened,
    the audio signed (C2PA for wav, mp3, flac, aac) and audited. A prompt the policy refuses exits with 3."""
    import json

    from conjure.music.pipeline import MusicPipeline
    from conjure.pipelines.speech import FORMATS
    from conjure.safety.verdict import Refused
    suffix = out.suffix.lstrip(".").lower()
    fmt = fmt or (suffix if suffix in FORMATS else "wav")
    pipe = MusicPipeline()
    try:
        music = pipe(prompt, seed=seed, fmt=fmt, bars=bars, tempo=tempo, key=key, meter=meter,
                     instrument=instrument, temperature=temperature, strict_bars=not free_bars,
                     key_guidance=key_guidance)
    except Refused as e:
        _fail(str(e), code=3)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))
    for path, data in ((out, music.audio), (midi, music.midi)):
        if path is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    if explain:
        typer.echo(json.dumps(music.request.to_dict(), indent=1), err=True)
    r = music.request
    typer.echo(f"{out}  ({r.style}, {r.meter}, {r.key_name}, {r.tempo_bpm} bpm, {r.instrument}, "
               f"{len(music.measures)} bars, {music.duration_s:.1f} s)")


@music_app.command("data")
def music_data(workers: Annotated[int, typer.Option(help="Parsing processes.")] = 2) -> None:
    """Parse music21's bundled corpus (Bach chorales, ABC folk collections) into the melody cache."""
    from conjure.music.corpus import build_corpus, describe, load_corpus
    path = build_corpus(workers=workers)
    typer.echo(f"{path}: {describe(load_corpus())}")


@music_app.command("train")
def music_train(
    run_dir: Annotated[Path, typer.Option(help="Run folder (resumes from its checkpoint).")] = Path("runs/music"),
    steps: Annotated[int, typer.Option(help="Optimiser steps of 32 pieces.")] = 3000,
    preset: Annotated[str, typer.Option(help="base, or test (tiny).")] = "base",
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (resumably) after this many minutes.")] = None,
    install: Annotated[bool, typer.Option(help="Copy the finished model to models/conjure-music.")] = False,
) -> None:
    """Train (or resume) the melody model on the corpus's training split."""
    import shutil

    from conjure.music.pipeline import MODEL_DIR
    from conjure.music.train import train
    try:
        done = train(run_dir, steps=steps, preset=preset, max_minutes=max_minutes)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(str(e))
    if done is None:
        typer.echo(f"stopped early; run the same command again to resume {run_dir}")
        return
    if install:
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("weights.safetensors", "config.json"):
            shutil.copy2(done / name, MODEL_DIR / name)
    typer.echo(str(MODEL_DIR if install else done))


@music_app.command("evaluate")
def music_evaluate(
    model: Annotated[Path, typer.Option(help="Model folder.")] = Path("models/conjure-music"),
    n: Annotated[int, typer.Option(help="Generated pieces (spread over the prompt grid).")] = 240,
    out: Annotated[Path, typer.Option(help="JSON report (the committed one: python benchmarks/music.py).")]
    = Path("runs/music/evaluation.json"),
    seed: Annotated[int, typer.Option(help="First sampling seed.")] = 0,
    free_bars: Annotated[bool, typer.Option("--free-bars", help="Sample with the model's own bar lines.")] = False,
    key_guidance: Annotated[float, typer.Option(help="Key-profile prior weight (0 = the model alone).")]
    = KEY_GUIDANCE,
) -> None:
    """Held-out perplexity, key and meter adherence, and n-gram novelty (with real-data baselines), sampled as
    `conjure compose` samples (bars filled to the meter unless --free-bars)."""
    import json

    from conjure.music.evaluate import evaluate
    try:
        report = evaluate(model, n=n, seed=seed, strict_bars=not free_bars, key_guidance=key_guidance)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    typer.echo(json.dumps(report["summary"], indent=1))


def register(app: typer.Typer) -> None:
    app.command("compose")(compose)
    app.add_typer(music_app, name="music")
