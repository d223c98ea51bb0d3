"""Symbolic checks on melodies: key finding, meter from bar lines and onsets, n-gram novelty, adherence.

They judge a generated tune by its notes alone (never its header), so a model that was asked for
"D major, 6/8" can be scored on whether the tune it wrote sounds like that, and on whether it copies its
training set. A melody is a list of bars, each a list of (pitch, dur) events: MIDI pitch 0-127 or -1 for a
rest, dur in ticks of `TICKS` per quarter note.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from conjure.music.corpus import TICKS  # ticks per quarter note

Measures = list[list[tuple[int, int]]]

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MODES = {"major": "major", "ionian": "major", "mixolydian": "major", "lydian": "major",
          "minor": "minor", "aeolian": "minor", "dorian": "minor", "phrygian": "minor", "locrian": "minor"}

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = the tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

# Supported meters and their beat in ticks: quarters for simple meters, dotted quarters for compound ones,
# halves for 2/2 and 3/2, dotted halves for 6/4. Order breaks ties in estimate_meter.
METERS = {"2/4": TICKS, "3/4": TICKS, "4/4": TICKS, "2/2": 2 * TICKS, "6/8": 3 * TICKS // 2,
          "9/8": 3 * TICKS // 2, "12/8": 3 * TICKS // 2, "3/8": 3 * TICKS // 2, "3/2": 2 * TICKS, "6/4": 3 * TICKS}
_SAME_METER = {"2/2": "4/4"}  # one bar length, one feel at the tempi of a folk tune
_Z95 = 1.959963984540054


def _events(bar: list[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
    """(onset tick within the bar, pitch, dur) for each event; rejects malformed events."""
    pos = 0
    for pitch, dur in bar:
        if dur <= 0 or not -1 <= pitch <= 127:
            raise ValueError(f"bad event ({pitch}, {dur}): pitch must be 0-127 or -1 (rest), dur ticks > 0")
        yield pos, pitch, dur
        pos += dur


def _notes(measures: Measures) -> Iterator[tuple[int, int]]:
    """(pitch, dur) of every note in order, rests skipped."""
    for bar in measures:
        for _, pitch, dur in _events(bar):
            if pitch >= 0:
                yield pitch, dur


def _length(bar: list[tuple[int, int]]) -> int:
    return sum(dur for _, _, dur in _events(bar))


def _inner_bars(measures: Measures) -> Measures:
    """All bars but the first (maybe a pickup) and the last (maybe short); all bars when there are no inner ones."""
    return measures[1:-1] if len(measures) > 2 else measures


# ---- key ---------------------------------------------------------------------------------------------------


def estimate_key(measures: Measures) -> tuple[int, str, float]:
    """Krumhansl-Schmuckler key finding: (tonic, mode, r) of the rotated Krumhansl-Kessler profile that best
    correlates (Pearson) with the melody's duration-weighted pitch-class histogram."""
    hist = np.zeros(12)
    for pitch, dur in _notes(measures):
        hist[pitch % 12] += dur
    if not hist.any():
        raise ValueError("the melody has no notes (only rests or nothing); a key needs at least one note")
    if np.ptp(hist) == 0:
        raise ValueError("all 12 pitch classes are equally weighted; the key is undefined")
    best = (0, "major", -math.inf)
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1])
            if r > best[2]:
                best = (tonic, mode, r)
    return best


def key_name(tonic: int, mode: str) -> str:
    """'F# minor' for (6, 'minor'), spelled with PITCH_NAMES."""
    if mode not in ("major", "minor"):
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    return f"{PITCH_NAMES[tonic % 12]} {mode}"


def parse_key(text: str) -> tuple[int, str]:
    """(tonic, mode) from 'D major', 'd minor', 'Bb', 'F#m', 'E dorian' or ABC's 'Dmix', 'Ador'.

    Church modes fold to the mode of their third (dorian, phrygian, aeolian, locrian: minor; ionian, lydian,
    mixolydian: major); a bare tonic is major.
    """
    s = text.strip()
    forms = ("expected a tonic A-G with optional # or b, then nothing (major), 'm', 'major', 'minor' or a mode "
             "name (ionian, dorian, phrygian, lydian, mixolydian, aeolian, locrian; 3-letter forms allowed)")
    if not s or s[0].upper() not in _LETTERS:
        raise ValueError(f"cannot read key {text!r}: {forms}")
    tonic, i = _LETTERS[s[0].upper()], 1
    while i < len(s) and s[i] in "#b":
        tonic += 1 if s[i] == "#" else -1
        i += 1
    suffix = s[i:].strip().lower()
    if suffix in ("", "m"):
        return tonic % 12, "major" if suffix == "" else "minor"
    modes = [mode for name, mode in _MODES.items() if len(suffix) >= 3 and name.startswith(suffix)]
    if not modes:
        raise ValueError(f"cannot read key {text!r}: {forms}")
    return tonic % 12, modes[0]


# ---- meter -------------------------------------------------------------------------------------------------


def parse_meter(text: str) -> tuple[int, int]:
    """(numerator, denominator) of a supported meter; ABC's 'C' and 'C|' read as 4/4 and 2/2."""
    s = {"C": "4/4", "C|": "2/2"}.get(text.strip(), text.strip().replace(" ", ""))
    if s not in METERS:
        raise ValueError(f"unsupported meter {text!r}; supported: {', '.join(METERS)} (and C, C|)")
    num, den = s.split("/")
    return int(num), int(den)


def bar_ticks(meter: str) -> int:
    """Length of one full bar in ticks."""
    num, den = parse_meter(meter)
    return num * TICKS * 4 // den


def _canonical(meter: str) -> str:
    num, den = parse_meter(meter)
    return _SAME_METER.get(f"{num}/{den}", f"{num}/{den}")


def estimate_meter(measures: Measures) -> str | None:
    """The supported meter the notes and bar lines imply, or None (fewer than 2 bars, no notes, odd bar length).

    The bar length is the most common duration of the inner bars. When several meters share it (3/4 and 6/8;
    12/8, 3/2 and 6/4) the onsets decide, read from every bar of that length. Each note's onset weighs its
    duration, since long notes are heard as accented. Positions that are a beat in every candidate (the
    downbeat) are dropped, as they cannot tell them apart. A candidate's score is the mean weight per its
    remaining beat positions: the mean rather than the sum, so that a meter with more beats per bar
    (3/4 over 6/8) is not favoured by running eighths, which sit on every position alike. The highest score
    wins; ties go to the meter listed first in METERS. 4/4 and 2/2 both come back as '4/4'.
    """
    if len(measures) < 2 or not list(_notes(measures)):  # list() also checks every duration
        return None
    lengths = Counter(_length(bar) for bar in _inner_bars(measures))
    length = lengths.most_common(1)[0][0]
    candidates = list(dict.fromkeys(_canonical(m) for m in METERS if bar_ticks(m) == length))
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    weight: Counter[int] = Counter()
    for bar in measures:
        if _length(bar) == length:
            for pos, pitch, dur in _events(bar):
                if pitch >= 0:
                    weight[pos] += dur
    beats = {m: set(range(0, length, METERS[m])) for m in candidates}
    shared = set.intersection(*beats.values())
    scores = {m: sum(weight[p] for p in b - shared) / max(len(b - shared), 1) for m, b in beats.items()}
    return max(candidates, key=lambda m: scores[m])  # max keeps the first of equal scores


# Real tunes have short bars at section and phrase boundaries (a pickup before a repeat, a chorale's phrase
# ends): on the corpus's validation split, 55% of pieces have >= 90% full-length inner bars and 96% have >= 75%.
# 0.75 was chosen there, so that a real piece in its own meter passes; the test split is reported as the ceiling.
BAR_MATCH_MIN = 0.75


def meter_report(measures: Measures, meter: str) -> dict[str, Any]:
    """How well a melody keeps the asked meter.

    Inner bars are all but the first and last (all bars when there are fewer than three).
    Returns bar_match (share of inner bars exactly one asked bar long), downbeat_onsets (share of inner bars
    that open with a note rather than a rest), estimated (estimate_meter) and adheres (the estimate is the asked
    meter, 2/2 counting as 4/4, and bar_match >= BAR_MATCH_MIN).
    """
    length, inner = bar_ticks(meter), _inner_bars(measures)
    n = max(len(inner), 1)
    bar_match = sum(_length(bar) == length for bar in inner) / n
    downbeats = sum(bool(bar) and bar[0][0] >= 0 for bar in inner) / n
    estimated = estimate_meter(measures)
    adheres = estimated is not None and _canonical(estimated) == _canonical(meter) and bar_match >= BAR_MATCH_MIN
    return {"bar_match": bar_match, "downbeat_onsets": downbeats, "estimated": estimated, "adheres": adheres}


# ---- novelty -----------------------------------------------------------------------------------------------


def intervals(measures: Measures) -> list[int]:
    """Semitone steps between consecutive notes across bar lines; rests are skipped, a repeated pitch is 0."""
    pitches = [p for p, _ in _notes(measures)]
    return [b - a for a, b in zip(pitches, pitches[1:])]


class NgramIndex:
    """Every run of n consecutive intervals in a set of pieces. Intervals make it transposition-invariant, so a
    tune moved to another key still matches; 12 intervals (13 notes) is about two bars of a folk tune."""

    def __init__(self, pieces: Iterable[Measures], n: int = 12):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = n
        self.grams: set[tuple[int, ...]] = set()
        for piece in pieces:
            self.grams.update(self._grams(piece))

    def _grams(self, measures: Measures) -> Iterator[tuple[int, ...]]:
        steps = intervals(measures)
        return (tuple(steps[i:i + self.n]) for i in range(len(steps) - self.n + 1))

    def shares(self, measures: Measures) -> bool:
        """Whether any n-gram of the piece occurs in the index (never, with fewer than n + 1 notes)."""
        return any(g in self.grams for g in self._grams(measures))

    def __len__(self) -> int:
        return len(self.grams)


def novelty_rate(index: NgramIndex, pieces: Iterable[Measures]) -> float:
    """Share of pieces that share at least one n-gram with the index: the copy rate (1 minus it is the share
    of wholly novel pieces)."""
    flags = [index.shares(p) for p in pieces]
    if not flags:
        raise ValueError("no pieces to check")
    return sum(flags) / len(flags)


# ---- summary -----------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = _Z95) -> list[float]:
    """Wilson score interval [lo, hi] for a binomial share; stays inside [0, 1] and sane at 0 or n successes."""
    if n <= 0:
        raise ValueError("n must be positive")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def adherence_summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Key and meter adherence of generated tunes, each a dict with measures, key ((tonic, mode) or text such
    as 'D major') and meter. A tune whose key cannot be estimated (no notes) counts as missing its key."""
    if not items:
        raise ValueError("no items to summarise")
    key_hits = meter_hits = 0
    for item in items:
        asked = item["key"]
        tonic, mode = parse_key(asked) if isinstance(asked, str) else (int(asked[0]) % 12, str(asked[1]))
        try:
            found = estimate_key(item["measures"])[:2]
        except ValueError:
            found = None
        key_hits += found == (tonic, mode)
        meter_hits += meter_report(item["measures"], item["meter"])["adheres"]
    n = len(items)
    return {"n": n,
            "key_adherence": key_hits / n, "key_adherence_ci95": wilson_interval(key_hits, n),
            "meter_adherence": meter_hits / n, "meter_adherence_ci95": wilson_interval(meter_hits, n)}
