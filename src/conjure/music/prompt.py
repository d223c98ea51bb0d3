"""Prompt -> music request, by rule: "a lively jig in D major on the fiddle" -> style jig, meter 6/8, D major,
tempo 116 bpm, General MIDI program 40 (violin).

Explicit words win over implied ones: a key named in the prompt beats the mode a mood implies, a meter named
beats the style's usual one, "at 90 bpm" beats the mood's tempo. `MusicRequest.explain` lists where each
setting came from, so a surprising result can be traced to the word that caused it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from conjure.music.corpus import METERS
from conjure.music.tokens import NOTE_NAMES, STYLE_TOKEN, STYLES

# style -> (usual meter, tempo in beats per minute, default instrument). The beat is the meter's: a quarter in
# x/4, a dotted quarter in 3/8, 6/8, 9/8 and 12/8, a half note in x/2.
STYLE_DEFAULTS = {
    "chorale": ("4/4", 72, "organ"), "jig": ("6/8", 104, "fiddle"), "slip jig": ("9/8", 100, "fiddle"),
    "reel": ("4/4", 180, "fiddle"), "hornpipe": ("4/4", 144, "fiddle"), "strathspey": ("4/4", 120, "fiddle"),
    "waltz": ("3/4", 138, "accordion"), "march": ("2/4", 112, "flute"), "polka": ("2/4", 132, "accordion"),
    "slide": ("12/8", 116, "fiddle"), "morris": ("4/4", 110, "accordion"),
    "country dance": ("6/8", 96, "fiddle"), "carol": ("3/4", 96, "organ"), "air": ("3/4", 66, "flute"),
    "folk song": ("2/4", 96, "piano"), "tune": ("4/4", 108, "piano"),
}
STYLE_SYNONYMS = {"hymn": "chorale", "chorale": "chorale", "bach": "chorale", "slip jig": "slip jig",
                  "slipjig": "slip jig", "jig": "jig", "reel": "reel", "hornpipe": "hornpipe",
                  "strathspey": "strathspey", "waltz": "waltz", "march": "march", "polka": "polka",
                  "slide": "slide", "morris": "morris", "country dance": "country dance", "carol": "carol",
                  "christmas": "carol", "air": "air", "lament": "air", "ballad": "air", "lullaby": "air",
                  "folk song": "folk song", "folksong": "folk song", "song": "folk song", "tune": "tune",
                  "melody": "tune"}
# mood word -> (tempo factor on the style's tempo, mode or None)
MOODS = {"lively": (1.15, "major"), "happy": (1.1, "major"), "cheerful": (1.1, "major"), "joyful": (1.1, "major"),
         "bright": (1.05, "major"), "upbeat": (1.15, "major"), "energetic": (1.2, None), "fast": (1.25, None),
         "quick": (1.2, None), "brisk": (1.15, None), "driving": (1.15, None),
         "sad": (0.75, "minor"), "melancholy": (0.75, "minor"), "melancholic": (0.75, "minor"),
         "mournful": (0.7, "minor"), "sorrowful": (0.7, "minor"), "dark": (0.85, "minor"),
         "gloomy": (0.8, "minor"), "wistful": (0.85, "minor"), "haunting": (0.8, "minor"),
         "calm": (0.8, None), "gentle": (0.8, None), "peaceful": (0.75, "major"), "tender": (0.8, None),
         "slow": (0.75, None), "stately": (0.85, None), "solemn": (0.8, None), "triumphant": (1.0, "major"),
         "majestic": (0.9, "major"), "playful": (1.1, "major")}
# instrument word -> General MIDI program (0-based)
INSTRUMENTS = {"piano": 0, "harpsichord": 6, "music box": 10, "organ": 19, "church organ": 19,
               "accordion": 21, "concertina": 21, "guitar": 24, "harp": 46, "violin": 40, "fiddle": 40,
               "viola": 41, "cello": 42, "strings": 48, "choir": 52, "voices": 52, "trumpet": 56,
               "horn": 60, "oboe": 68, "bassoon": 70, "clarinet": 71, "flute": 73, "recorder": 74,
               "whistle": 78, "tin whistle": 78, "bagpipe": 109, "bagpipes": 109, "pipes": 109,
               "banjo": 105, "mandolin": 25, "marimba": 12, "xylophone": 13, "vibraphone": 11}
# a key when the prompt names none: the keys most common in the corpus for each mode
DEFAULT_KEY = {"major": 2, "minor": 9}        # D major, A minor
MAX_PROMPT_CHARS = 500
MIN_BARS, MAX_BARS = 4, 64
KEY_GUIDANCE = 1.5        # weight of the key-profile prior on pitches when sampling (0 = the model alone), chosen
MAX_KEY_GUIDANCE = 4.0    # on a development run (benchmarks/results/music.md); above 2 novelty suffers
MIN_BPM, MAX_BPM = 30, 300

# "in D", "in F# minor", "key of b flat": a bare lower-case letter after "in" ("in a pub") is not a key
_KEY = re.compile(r"\b(in|key of)\s+([A-Ga-g])(#|b| sharp| flat|-sharp|-flat)?"
                  r"(?:\s*(major|minor|maj|min|m|dorian|mixolydian|aeolian|ionian))?(?![\w#])", re.I)
_METER = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})\b")
_BPM = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b", re.I)
_BARS = re.compile(r"\b(\d{1,3})\s*(?:bars|measures)\b", re.I)


@dataclass
class MusicRequest:
    style: str
    meter: str
    tonic: int
    mode: str
    tempo_bpm: int
    program: int
    instrument: str
    bars: int = 16
    explain: dict[str, str] = field(default_factory=dict)

    @property
    def key_name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    def to_dict(self) -> dict:
        return asdict(self) | {"key": self.key_name}


def _find(words: dict, text: str) -> str | None:
    """The longest listed word or phrase that occurs in text as whole words, earliest first."""
    hits = [(m.start(), -len(w), w) for w in words for m in re.finditer(rf"\b{re.escape(w)}s?\b", text)]
    return min(hits)[2] if hits else None


def parse_prompt(prompt: str, bars: int | None = None, tempo: int | None = None, key: str | None = None,
                 meter: str | None = None, instrument: str | None = None) -> MusicRequest:
    """A text prompt (and optional explicit settings, which win) -> MusicRequest; ValueError saying what to change."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty: describe the music, e.g. 'a lively jig in D major'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    text = " ".join(prompt.lower().split())
    why: dict[str, str] = {}
    word = _find(STYLE_SYNONYMS, text)
    style = STYLE_SYNONYMS[word] if word else "tune"
    why["style"] = f"the word '{word}'" if word else "no style word: a plain tune"
    usual_meter, bpm, default_instrument = STYLE_DEFAULTS[style]

    mood = _find(MOODS, text)
    factor, mood_mode = MOODS[mood] if mood else (1.0, None)

    from conjure.music.analysis import parse_key
    if key is not None:
        tonic, mode = parse_key(key)
        why["key"] = "the key setting"
    elif m := next((m for m in _KEY.finditer(prompt) if m.group(4) or m.group(1).lower() == "key of"
                    or m.group(2).isupper()), None):
        accidental = "#" if (m.group(3) or "").strip(" -") in ("#", "sharp") else ("b" if m.group(3) else "")
        mode_word = {"m": "minor", "min": "minor", "maj": "major"}.get((m.group(4) or "").lower(), m.group(4))
        tonic, mode = parse_key(f"{m.group(2).upper()}{accidental} {mode_word or mood_mode or 'major'}")
        why["key"] = f"'{m.group(0)}'" + ("" if m.group(4) or not mood_mode else f", mode from '{mood}'")
    else:
        mode = mood_mode or "major"
        tonic = DEFAULT_KEY[mode]
        why["key"] = f"mode from '{mood}', the corpus's usual {mode} tonic" if mood_mode else "default (D major)"

    if meter is not None or (m := _METER.search(text)):
        meter_s = meter if meter is not None else f"{m.group(1)}/{m.group(2)}"
        if meter_s not in METERS:
            raise ValueError(f"meter {meter_s} is not supported; choose from: {', '.join(METERS)}")
        why["meter"] = "the meter setting" if meter is not None else f"'{meter_s}' in the prompt"
    else:
        meter_s = usual_meter
        why["meter"] = f"usual for a {style}"

    if tempo is None and (m := _BPM.search(text)):
        tempo = int(m.group(1))
        why["tempo"] = f"'{m.group(0)}'"
    elif tempo is None:
        tempo = round(bpm * factor)
        why["tempo"] = f"{bpm} bpm for a {style}" + (f" x {factor} for '{mood}'" if mood else "")
    else:
        why["tempo"] = "the tempo setting"
    if not MIN_BPM <= tempo <= MAX_BPM:
        raise ValueError(f"tempo {tempo} bpm is out of range: give {MIN_BPM} to {MAX_BPM}")

    if instrument is not None:
        if instrument.lower() not in INSTRUMENTS:
            raise ValueError(f"unknown instrument '{instrument}'; choose from: {', '.join(sorted(INSTRUMENTS))}")
        inst = instrument.lower()
        why["instrument"] = "the instrument setting"
    else:
        inst = _find(INSTRUMENTS, text) or default_instrument
        why["instrument"] = f"the word '{inst}'" if inst in text else f"usual for a {style}"

    if bars is None and (m := _BARS.search(text)):
        bars = int(m.group(1))
    bars = 16 if bars is None else bars
    if not MIN_BARS <= bars <= MAX_BARS:
        raise ValueError(f"{bars} bars is out of range: give {MIN_BARS} to {MAX_BARS}")
    assert style in STYLES or style in STYLE_TOKEN
    return MusicRequest(style, meter_s, tonic, mode, tempo, INSTRUMENTS[inst], inst, bars, why)


# phrasings of a music prompt, for example prompts (the safety classifier learns them as the music model's own
# vocabulary); the second set is kept apart to check that unseen phrasings pass too
PHRASINGS = ("a {mood} {style} in {key}", "a {mood} {style} in {key} on the {instrument}",
             "{style} in {key}, {mood}, {instrument}", "compose a {mood} {style} for {instrument} in {key}",
             "a {style} in {key} at {bpm} bpm", "{mood} {instrument} {style}, {meter}, key of {key}",
             "{bars} bars of a {mood} {style} in {key}", "a {mood} tune in {key} for solo {instrument}")
HELDOUT_PHRASINGS = ("write me a {style} in {key} played on {instrument}, {mood} feel",
                     "{key} {style} for {instrument}, {mood} and {bpm} bpm",
                     "please make a {mood} little {style} in {key} ({meter})",
                     "{instrument} solo: {style}, {key}, {bars} bars, {mood}")


def example_prompts(n: int, seed: int = 0, heldout: bool = False) -> list[str]:
    """n distinct music prompts from conjure's own vocabulary (styles, moods, keys, instruments, meters)."""
    import random
    rng = random.Random(seed)
    names = [*NOTE_NAMES, "F#", "C#", "Bb", "Eb", "Ab", "D flat", "G sharp"]
    phrasings = HELDOUT_PHRASINGS if heldout else PHRASINGS
    out: set[str] = set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        key = f"{rng.choice(names)} {rng.choice(['major', 'minor', 'minor', 'Minor', 'Major'])}"
        text = rng.choice(phrasings).format(
            mood=rng.choice(sorted(MOODS)), style=rng.choice(sorted(STYLE_DEFAULTS)), key=key,
            instrument=rng.choice(sorted(INSTRUMENTS)), bpm=rng.randrange(60, 200, 4), meter=rng.choice(METERS),
            bars=rng.choice([8, 16, 24, 32]))
        out.add(re.sub(r"\ba (?=[aeiou])", "an ", text))
    return sorted(out)
