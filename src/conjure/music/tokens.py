"""The token language of conjure's melody model.

    BOS STYLE_jig METER_6/8 KEY_D_major  BAR P62 D12 P66 D6 ...  BAR ...  EOS

A piece opens with its conditioning (style, meter, key), then each bar is a BAR token followed by events,
each a pitch (`P<midi>`, or `REST`) and its duration (`D<ticks>`, `TICKS` per quarter). Bar lines are the
model's own: nothing in the decoding forces a bar to hold the meter's length, so meter adherence is measured,
not built in. Tempo and instrument are not tokens: the corpus has no reliable tempo marks, and both are applied
when the melody is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

from conjure.music.corpus import MAX_DUR, METERS, PITCH_RANGE, TICKS, Piece

STYLES = ("chorale", "jig", "slip jig", "reel", "hornpipe", "strathspey", "march", "air", "folk song", "tune")
# styles the corpus has too few pieces of to learn (waltz 6, carol 8, the rest none) take a neighbour's token;
# the prompt keeps the word for tempo and instrument
STYLE_TOKEN = {"waltz": "tune", "polka": "tune", "slide": "jig", "morris": "tune", "country dance": "jig",
               "carol": "air"}
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
SPECIALS = ("PAD", "BOS", "EOS", "BAR")
PITCHES = tuple(range(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
HEADER = 4                       # BOS, style, meter, key


def _vocab() -> list[str]:
    return [*SPECIALS, *(f"STYLE_{s}" for s in STYLES), *(f"METER_{m}" for m in METERS),
            *(f"KEY_{n}_{m}" for n in NOTE_NAMES for m in MODES), *(f"P{p}" for p in PITCHES), "REST",
            *(f"D{d}" for d in range(1, MAX_DUR + 1))]


VOCAB = _vocab()
INDEX = {t: i for i, t in enumerate(VOCAB)}
PAD, BOS, EOS, BAR, REST = (INDEX[t] for t in ("PAD", "BOS", "EOS", "BAR", "REST"))
PITCH_IDS = range(INDEX[f"P{PITCHES[0]}"], INDEX[f"P{PITCHES[-1]}"] + 1)
DUR_IDS = range(INDEX["D1"], INDEX[f"D{MAX_DUR}"] + 1)
assert TICKS == 12


@dataclass(frozen=True)
class Condition:
    style: str
    meter: str
    tonic: int                   # pitch class, C = 0
    mode: str                    # "major" | "minor"

    def tokens(self) -> list[int]:
        style = STYLE_TOKEN.get(self.style, self.style)
        if style not in STYLES:
            raise ValueError(f"unknown style '{self.style}'; choose from: {', '.join((*STYLES, *STYLE_TOKEN))}")
        if self.meter not in METERS:
            raise ValueError(f"unsupported meter '{self.meter}'; choose from: {', '.join(METERS)}")
        if self.mode not in MODES or not 0 <= self.tonic < 12:
            raise ValueError(f"bad key {self.tonic} {self.mode}: tonic is 0-11 (C = 0), mode major or minor")
        return [BOS, INDEX[f"STYLE_{style}"], INDEX[f"METER_{self.meter}"],
                INDEX[f"KEY_{NOTE_NAMES[self.tonic]}_{self.mode}"]]


def transpose(measures: list[list[tuple[int, int]]], k: int) -> list[list[tuple[int, int]]] | None:
    """The melody k semitones up (down for k < 0), or None when a note leaves the model's range."""
    out = [[(p + k if p >= 0 else -1, d) for p, d in bar] for bar in measures]
    ok = all(PITCH_RANGE[0] <= p <= PITCH_RANGE[1] for bar in out for p, _ in bar if p >= 0)
    return out if ok else None


def encode(cond: Condition, measures: list[list[tuple[int, int]]], end: bool = True) -> list[int]:
    ids = cond.tokens()
    for bar in measures:
        ids.append(BAR)
        for p, d in bar:
            ids += [REST if p < 0 else INDEX[f"P{p}"], INDEX[f"D{d}"]]
    return ids + [EOS] if end else ids


def encode_piece(piece: Piece, k: int = 0) -> list[int] | None:
    """A corpus piece transposed by k semitones (its key with it) as token ids; None when out of range."""
    measures = transpose(piece.measures, k)
    if measures is None:
        return None
    return encode(Condition(piece.style, piece.meter, (piece.tonic + k) % 12, piece.mode), measures)


def decode(ids: list[int]) -> list[list[tuple[int, int]]]:
    """Token ids (with or without the header) -> bars of (pitch, ticks). Decoding stops at EOS; an event
    without its duration at the end is dropped."""
    bars: list[list[tuple[int, int]]] = []
    pending: int | None = None
    for i in ids:
        if i == EOS:
            break
        if i == BAR:
            bars.append([])
            pending = None
        elif i == REST or i in PITCH_IDS:
            pending = -1 if i == REST else PITCHES[i - PITCH_IDS.start]
        elif i in DUR_IDS and pending is not None and bars:
            bars[-1].append((pending, i - DUR_IDS.start + 1))
            pending = None
    return [b for b in bars if b]


def allowed_next(prev: int) -> tuple[range | list[int], ...]:
    """The token ids that may follow `prev` in a well-formed body (the decoder masks the rest): after a pitch
    or rest, a duration; otherwise a pitch, a rest, a bar line or the end."""
    if prev == REST or prev in PITCH_IDS:
        return (DUR_IDS,)
    return (PITCH_IDS, [REST, BAR, EOS])
