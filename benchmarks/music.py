"""Music benchmark: the melody model's held-out perplexity, key and meter adherence and n-gram novelty (each
beside the same measurement on real held-out pieces), and the end-to-end time of `conjure compose`.

Writes benchmarks/results/music.json and music.md, and the music keys of audio.json (the speech numbers there are
kept as audio.py wrote them). Needs the melody cache (`conjure music data`).

    python benchmarks/music.py [--n 240]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"music_key_adherence": (">=", 0.8), "music_meter_adherence": (">=", 0.8), "music_novelty": ("<=", 0.1)}
PROMPTS = ["a lively jig in D major", "a sad air in E minor on the flute", "a reel in G on the fiddle",
           "a stately march", "a Bach chorale in F major"]
SEED = 1000                     # first sampling seed: apart from the development run (seeds 0-119) that chose g
SWEEP = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
DEV_RUN = "g 0 / 0.5 / 1 / 1.5 / 2: key adherence 0.533 / 0.675 / 0.800 / 0.858 / 0.892 on 120 pieces, seeds 0-119"


def end_to_end(runs: int = 3) -> dict:
    """Prompt -> screened, composed, rendered, encoded (wav), signed and audited file; medians over PROMPTS."""
    from conjure.music.pipeline import MusicPipeline
    pipe = MusicPipeline()
    pipe("a warm-up tune", seed=0)                       # model load, policy classifier, signing identity
    times, stages, audio_s = [], {}, []
    for i in range(runs):
        for j, prompt in enumerate(PROMPTS):
            t = time.perf_counter()
            music = pipe(prompt, seed=100 * i + j)
            times.append(time.perf_counter() - t)
            audio_s.append(music.duration_s)
            for k, v in music.timings.items():
                stages.setdefault(k, []).append(v)
    return {"calls": len(times), "median_s": statistics.median(times), "median_audio_s": statistics.median(audio_s),
            "stages_median_s": {k: round(statistics.median(v), 3) for k, v in stages.items()}}


def met(name: str, value: float) -> bool:
    op, target = TARGETS[name]
    return value >= target if op == ">=" else value <= target


def markdown(r: dict) -> str:
    s, ev = r["summary"], r["evaluation"]
    ci = lambda k: "{:.2f}-{:.2f}".format(*s[k + "_ci95"])          # noqa: E731
    lines = [
        "# Music benchmark", "",
        f"Machine: {r['machine']['cpus']} CPU cores shared with other work (load average "
        f"{r['machine']['load_before']} before), no GPU. Reproduce: `{r['command']}` ({r['wall_s']:.0f} s).", "",
        f"Model `conjure-music`: {ev['params']:,} parameters; corpus {ev['corpus']['train']} training, "
        f"{ev['corpus']['validation']} validation and {ev['corpus']['test']} test pieces (split by tune). "
        f"{s['pieces']} generated pieces of {ev['bars']} bars over a grid of {len(ev['by_condition'])} style and "
        "meter conditions and all 24 keys (`conjure.music.evaluate.prompt_grid`).", "",
        "| metric | generated | 95% CI | real test pieces | target | |", "|---|---|---|---|---|---|",
        f"| music_key_adherence (Krumhansl-Kessler key of the notes = asked key) | {s['music_key_adherence']:.3f} | "
        f"{ci('music_key_adherence')} | {s['real_test_key_adherence']:.3f} | >= 0.8 | "
        f"{'met' if met('music_key_adherence', s['music_key_adherence']) else 'not met'} |",
        f"| music_meter_adherence (meter from bar lengths and onsets = asked, and >= 75% of bars the right length) "
        f"| {s['music_meter_adherence']:.3f} | {ci('music_meter_adherence')} | {s['real_test_meter_adherence']:.3f} "
        f"| >= 0.8 | {'met' if met('music_meter_adherence', s['music_meter_adherence']) else 'not met'} |",
        f"| music_novelty (share sharing a 12-interval n-gram with the training set) | {s['music_novelty']:.3f} | | "
        f"{s['real_test_novelty']:.3f} | <= 0.1 | {'met' if met('music_novelty', s['music_novelty']) else 'not met'} |",
        "", f"Transposed-corpus baseline: {s['training_transposed_novelty']:.3f} of training pieces transposed by "
        "-5 to +7 semitones share an n-gram with the training set (the check is transposition-invariant, so a copy "
        "in another key is caught).", "",
        f"Sampling as `conjure compose` does: temperature 1.0, top-p 0.95, key guidance {r['key_guidance']} "
        "(each pitch's probability times (w / mean w) ** g, w the asked key's Krumhansl-Kessler weight for its "
        "pitch class: a key-profile prior multiplied into the model's distribution, the same profile the key "
        "finder correlates with), and bars filled to the meter after a pickup "
        "(strict bars: decoding masks durations that would overflow a bar; the rhythm within the bar, the onsets "
        "that decide the estimated meter, and every pitch are sampled from the model). **The model alone** (g = 0, "
        f"same pieces): key {r['model_alone']['summary']['music_key_adherence']:.3f} "
        "[{:.2f}, {:.2f}], ".format(*r['model_alone']['summary']['music_key_adherence_ci95']) +
        f"meter {r['model_alone']['summary']['music_meter_adherence']:.3f}, novelty "
        f"{r['model_alone']['summary']['music_novelty']:.3f}: the key target is met by the prior, not by the "
        f"model. g = {r['key_guidance']} was chosen on a development run ({DEV_RUN}); the pieces reported here "
        f"use seeds from {r['evaluation']['seed']}. With free bars (the model's own bar "
        f"lines): key {r['free_bars']['summary']['music_key_adherence']:.3f}, meter "
        f"{r['free_bars']['summary']['music_meter_adherence']:.3f}, novelty "
        f"{r['free_bars']['summary']['music_novelty']:.3f}. The real pieces' column is the judges' ceiling: the key "
        "finder gives the labelled key for 73% of real held-out tunes, and the meter finder passes 93%.", "",
        f"Held-out perplexity (body tokens, untransposed): test {ev['perplexity']['test']['perplexity']:.2f} "
        f"({ev['perplexity']['test']['tokens']:,} tokens), validation {ev['perplexity']['validation']['perplexity']:.2f}.",
        "", "## Key guidance", "", "| g | pieces | key adherence | meter adherence | novelty |", "|---|---|---|---|---|",
        *[f"| {row['key_guidance']} | {row['n']} | {row['music_key_adherence']:.3f} | "
          f"{row['music_meter_adherence']:.3f} | {row['music_novelty']:.3f} |" for row in r["guidance_sweep"]],
        "", "## By condition", "", "| style, meter | n | key adherence | meter adherence |", "|---|---|---|---|"]
    for cond, v in ev["by_condition"].items():
        lines.append(f"| {cond} | {v['n']} | {v['key_adherence']:.2f} | {v['meter_adherence']:.2f} |")
    e = r["end_to_end"]
    lines += ["", "## Speed", "",
              f"Composition alone: median {ev['speed']['median_s_per_piece']:.2f} s per 16-bar piece "
              f"({ev['speed']['median_notes_per_piece']} notes). End to end (prompt to signed, audited WAV, "
              f"{e['calls']} calls): median {e['median_s']:.2f} s for {e['median_audio_s']:.1f} s of audio; stages "
              f"{e['stages_median_s']}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "conjure-music")
    ap.add_argument("--seed", type=int, default=SEED, help="first sampling seed (the development run used 0-119)")
    args = ap.parse_args()
    from conjure.music.evaluate import evaluate
    from conjure.music.prompt import KEY_GUIDANCE
    t0 = time.time()
    load = list(os.getloadavg())
    kw = {"seed": args.seed, "progress": False}
    ev = evaluate(args.model, n=args.n, strict_bars=True, key_guidance=KEY_GUIDANCE, **kw)   # as conjure compose
    alone = evaluate(args.model, n=args.n, strict_bars=True, key_guidance=0.0, **kw)         # the model alone
    free = evaluate(args.model, n=args.n, strict_bars=False, key_guidance=KEY_GUIDANCE, **kw)  # its own bar lines
    sweep = {g: alone if g == 0 else ev if g == KEY_GUIDANCE else
             evaluate(args.model, n=args.n // 2, strict_bars=True, key_guidance=g, **kw) for g in SWEEP}
    result = {"command": "python benchmarks/music.py" + (f" --n {args.n}" if args.n != 240 else "")
              + (f" --seed {args.seed}" if args.seed != SEED else ""),
              "machine": {"cpus": os.cpu_count(), "load_before": [round(x, 1) for x in load],
                          "python": platform.python_version()},
              "key_guidance": KEY_GUIDANCE, "evaluation": ev, "summary": ev["summary"], "model_alone": alone,
              "free_bars": free,
              "guidance_sweep": [{"key_guidance": g, "n": r["summary"]["pieces"],
                                  **{k: r["summary"][k] for k in ("music_key_adherence", "music_meter_adherence",
                                                                  "music_novelty")}} for g, r in sweep.items()],
              "end_to_end": end_to_end()}
    result["targets_met"] = {k: met(k, ev["summary"][k]) for k in TARGETS}
    result["wall_s"] = time.time() - t0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "music.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "music.md").write_text(markdown(result))
    audio_path = RESULTS / "audio.json"
    audio = json.loads(audio_path.read_text()) if audio_path.exists() else {}
    audio["music"] = {k: v for k, v in ev["summary"].items()} | {"report": "benchmarks/results/music.md"}
    for k in TARGETS:
        audio[k] = ev["summary"][k]
        audio.setdefault("targets_met", {})[k] = result["targets_met"][k]
    audio_path.write_text(json.dumps(audio, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    sys.exit(main())
