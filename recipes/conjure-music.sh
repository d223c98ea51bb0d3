#!/usr/bin/env bash
# Reproduce the built-in melody model models/conjure-music with one command (`make music-model`):
# parse music21's corpus into the melody cache, train 3,000 steps (resumable: run again after an interruption),
# install the weights, then measure it (benchmarks/results/music.json, music.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
[ -f "${CONJURE_HOME:-$HOME/.local/share/conjure}/data/music/melodies.jsonl" ] || $BIN/conjure music data
$BIN/conjure music train --run-dir runs/music --steps 3000 --install
$BIN/python benchmarks/music.py    # benchmarks/results/music.json and music.md, music keys of audio.json
