"""Speech benchmark: Piper speed (warm real-time factor, time to first clause, cold start) and the
round-trip word error rate of every registered voice (speak → pocketsphinx), with bootstrap intervals.

Writes benchmarks/results/audio.json and audio.md. The texts are fixed files under benchmarks/data/.
Synthesis figures time the voice alone (conjure's clause splitting + the warm Piper process), not the
safety screen, encoding or signing, which the end-to-end figure includes.

    python benchmarks/audio.py [--sentences 110] [--paragraphs 50] [--cold-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT / "benchmarks" / "data"
TARGETS = {"tts_rtf": 0.3, "tts_first_chunk_ms": 300.0, "wer_piper": 0.15}
BOOTSTRAP = 2000


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of sum(num)/sum(den), resampling items with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), (BOOTSTRAP, len(num)))
    ratios = num[idx].sum(1) / den[idx].sum(1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def bootstrap_median(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    meds = np.median(values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))], axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def cold_start(model: Path, runs: int, first_text: str) -> dict:
    """A fresh voice process each run: seconds until it is ready, and until its first clause is spoken."""
    from conjure.pipelines.speech import PiperProcess, split_clauses
    ready, first = [], []
    for _ in range(runs):
        proc = PiperProcess(model)
        t0 = time.perf_counter()
        proc.start()
        ready.append(time.perf_counter() - t0)
        b"".join(proc.synthesize(split_clauses(first_text)[0]))
        first.append(time.perf_counter() - t0)
        proc.close()
    return {"runs": runs, "process_ready_s": statistics.median(ready), "first_clause_s": statistics.median(first),
            "all_first_clause_s": [round(x, 3) for x in first]}


def warm_speed(proc, paragraphs: list[str]) -> dict:
    """Per paragraph, clause by clause on the warm process: first clause ready (ms) and synthesis/audio seconds."""
    from conjure.pipelines.speech import split_clauses
    b"".join(proc.synthesize("Warming up the voice."))
    first_ms, synth_s, audio_s = [], [], []
    for text in paragraphs:
        t0 = time.perf_counter()
        samples = 0
        for i, clause in enumerate(split_clauses(text)):
            pcm = b"".join(proc.synthesize(clause))
            if i == 0:
                first_ms.append((time.perf_counter() - t0) * 1000)
            samples += len(pcm) // 2
        synth_s.append(time.perf_counter() - t0)
        audio_s.append(samples / proc.sample_rate)
    first, synth, audio = np.array(first_ms), np.array(synth_s), np.array(audio_s)
    return {"paragraphs": len(paragraphs), "tts_rtf": float(synth.sum() / audio.sum()),
            "tts_rtf_ci95": bootstrap_ratio(synth, audio), "audio_s": float(audio.sum()),
            "tts_first_chunk_ms": float(np.median(first)), "tts_first_chunk_ms_ci95": bootstrap_median(first),
            "tts_first_chunk_ms_p90": float(np.percentile(first, 90)), "tts_first_chunk_ms_max": float(first.max())}


def round_trip_wer(pipe, voice_name: str, sentences: list[str]) -> dict:
    """Speak each sentence, transcribe it with pocketsphinx, and count word errors against the text."""
    from conjure.pipelines.speech import wav_bytes
    from conjure.pipelines.transcribe import transcribe
    from conjure.pipelines.voices import get_voice
    voice = get_voice(voice_name)
    errors, lengths, worst, t_synth, t_asr = [], [], [], 0.0, 0.0
    for text in sentences:
        t0 = time.perf_counter()
        pieces = list(pipe.stream(text, voice))
        pcm, rate = np.concatenate([p for p, _ in pieces]), pieces[0][1]
        t1 = time.perf_counter()
        hyp = transcribe(wav_bytes(pcm, rate)).text
        t_synth, t_asr = t_synth + t1 - t0, t_asr + time.perf_counter() - t1
        ref = words(text)
        e = edit_distance(ref, words(hyp))
        errors.append(e)
        lengths.append(len(ref))
        worst.append((e / len(ref), text, hyp))
    num, den = np.array(errors, float), np.array(lengths, float)
    worst.sort(reverse=True)
    return {"voice": voice_name, "engine": voice.engine, "sentences": len(sentences), "words": int(den.sum()),
            "wer": float(num.sum() / den.sum()), "wer_ci95": bootstrap_ratio(num, den),
            "sentences_exact": int((num == 0).sum()), "synthesis_s": round(t_synth, 1), "asr_s": round(t_asr, 1),
            "worst": [{"wer": round(w, 3), "text": t, "heard": h} for w, t, h in worst[:3]]}


def end_to_end(pipe, text: str, runs: int = 3) -> dict:
    """The whole pipeline (screen → speak → mp3 → C2PA → audit) on a warm process, seconds per call."""
    pipe(text, voice="joe", fmt="mp3")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        speech = pipe(text, voice="joe", fmt="mp3")
        times.append(time.perf_counter() - t0)
    return {"text_chars": len(text), "audio_s": round(speech.duration_s, 2), "median_s": statistics.median(times),
            "steps_s": {k: round(v, 3) for k, v in speech.timings.items()}}


MUSIC_POINTER = ("Music (key and meter adherence, novelty, perplexity, speed): `python benchmarks/music.py`, "
                 "report in benchmarks/results/music.md; its keys are merged into audio.json.")


def markdown(r: dict) -> str:
    s, c = r["speed"], r["cold_start"]
    ok = {k: ("met" if v else "**missed**") for k, v in r["targets_met"].items()}
    lines = [
        "# Speech benchmark", "",
        f"Machine: {r['machine']['cpus']} CPU cores shared with other work (load average {r['machine']['load_before']}"
        f" before, {r['machine']['load_after']} after), no GPU; {r['machine']['python']}. "
        f"Reproduce: `{r['command']}` ({r['wall_s']:.0f} s).", "",
        "## Piper voice `joe` (warm process, synthesis only)", "",
        "| metric | value | 95% CI | target | |", "|---|---|---|---|---|",
        f"| tts_rtf (synthesis s per audio s, {s['paragraphs']} paragraphs, {s['audio_s']:.0f} s of audio) | "
        f"{s['tts_rtf']:.3f} | {s['tts_rtf_ci95'][0]:.3f}-{s['tts_rtf_ci95'][1]:.3f} | <= {TARGETS['tts_rtf']} | "
        f"{ok['tts_rtf']} |",
        f"| tts_first_chunk_ms (median; p90 {s['tts_first_chunk_ms_p90']:.0f}, max {s['tts_first_chunk_ms_max']:.0f}) | "
        f"{s['tts_first_chunk_ms']:.0f} | {s['tts_first_chunk_ms_ci95'][0]:.0f}-{s['tts_first_chunk_ms_ci95'][1]:.0f} | "
        f"<= {TARGETS['tts_first_chunk_ms']:.0f} | {ok['tts_first_chunk_ms']} |", "",
        f"Cold start (a new voice process, median of {c['runs']}): ready after {c['process_ready_s']:.2f} s, "
        f"first clause after {c['first_clause_s']:.2f} s.", "",
        f"End to end, warm (screen, speak, mp3, C2PA, audit; {r['end_to_end']['text_chars']} characters, "
        f"{r['end_to_end']['audio_s']} s of audio): {r['end_to_end']['median_s']:.2f} s per call; steps "
        f"{r['end_to_end']['steps_s']}.", "",
        "## Round-trip word error rate (speak → pocketsphinx en-us)", "",
        "| voice | engine | sentences | words | WER | 95% CI | exact sentences |", "|---|---|---|---|---|---|---|"]
    for w in r["wer"]:
        lines.append(f"| {w['voice']} | {w['engine']} | {w['sentences']} | {w['words']} | {w['wer']:.3f} | "
                     f"{w['wer_ci95'][0]:.3f}-{w['wer_ci95'][1]:.3f} | {w['sentences_exact']} |")
    piper = next(w for w in r["wer"] if w["voice"] == "joe")
    sure = ("and so is the whole 95% interval" if piper["wer_ci95"][1] <= TARGETS["wer_piper"] else
            f"by the point estimate only: the 95% interval reaches {piper['wer_ci95'][1]:.3f}, so the target is "
            "not established")
    lines += ["", f"Piper WER target <= {TARGETS['wer_piper']}: {ok['wer_piper']}, {sure}. Piper samples noise "
              "(VITS), so the same sentences give a slightly different WER on each run. The WER counts the "
              "recogniser's errors as well as the voice's: pocketsphinx's small acoustic model is itself far from "
              "perfect, so this is an upper bound on how unclear a voice is. espeak-ng's formant voice is "
              "understandable to people but pocketsphinx's acoustic model, trained on natural speech, hears "
              "little of it.", "", "Worst sentences per voice:", ""]
    for w in r["wer"]:
        for x in w["worst"]:
            lines.append(f"- {w['voice']} ({x['wer']:.2f}): \"{x['text']}\" heard as \"{x['heard']}\"")
    lines += ["", MUSIC_POINTER]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=110)
    parser.add_argument("--paragraphs", type=int, default=50)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()
    from conjure.pipelines.speech import SpeechPipeline
    from conjure.pipelines.voices import get_voice, list_voices, model_path

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    sentences = read_lines(DATA / "audio_sentences.txt")[:args.sentences]
    paragraphs = read_lines(DATA / "audio_paragraphs.txt")[:args.paragraphs]
    model = model_path(get_voice("joe"))
    cold = cold_start(model, args.cold_runs, paragraphs[0])
    pipe = SpeechPipeline()
    proc = pipe.voice_process(get_voice("joe"))
    speed = warm_speed(proc, paragraphs)
    wer = [round_trip_wer(pipe, v.name, sentences) for v in list_voices()]
    e2e = end_to_end(pipe, paragraphs[1])
    pipe.close()
    piper_wer = next(w["wer"] for w in wer if w["voice"] == "joe")
    result = {
        "command": "python benchmarks/audio.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "load_before": [round(x, 1) for x in load_before],
                    "load_after": [round(x, 1) for x in os.getloadavg()], "python": platform.python_version()},
        "cold_start": cold, "speed": speed, "wer": wer, "end_to_end": e2e,
        "tts_rtf": speed["tts_rtf"], "tts_first_chunk_ms": speed["tts_first_chunk_ms"],
        "targets": TARGETS,
        "targets_met": {"tts_rtf": speed["tts_rtf"] <= TARGETS["tts_rtf"],
                        "tts_first_chunk_ms": speed["tts_first_chunk_ms"] <= TARGETS["tts_first_chunk_ms"],
                        "wer_piper": piper_wer <= TARGETS["wer_piper"]},
        "wall_s": time.perf_counter() - t_start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "audio.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "audio.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
