"""The music corpus: melodies from music21's bundled corpus, parsed once into a JSON Lines cache.

Sources (all ship inside the `music21` wheel; no download): the Bach chorales (soprano line), and the ABC folk
collections O'Neill's Music of Ireland (1850), Ryan's Mammoth Collection, the Nottingham dataset, Aird's Airs,
two fife and minstrelsy books and 12 of the Essen folksong files. Each piece becomes one record: its melody as bars of
(pitch, duration) events in ticks (`TICKS` per quarter; pitch -1 is a rest; chords keep their top note), its meter,
its key (tonic and mode) and a style word. Parsing with music21 takes about 0.2 s a tune, so the cache is built
once (`conjure music data`), in parallel, and everything after reads the JSON Lines file.

Splits are by tune group (the normalised title, so the same tune in two collections is one group) with the
image datasets' deterministic hash (`conjure.data.build.split_of`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conjure.config import Settings, get_settings
from conjure.data.build import split_of

TICKS = 12                      # ticks per quarter note: sixteenths (3) and eighth-note triplets (4) are exact
METERS = ("2/4", "3/4", "4/4", "2/2", "3/8", "6/8", "9/8", "12/8", "3/2", "6/4")
MAX_DUR = 4 * TICKS * 2         # longest single event kept (a breve); longer pieces are skipped
PITCH_RANGE = (36, 96)          # C2..C7; pieces outside it are skipped

# (collection in music21's corpus, style when the tune does not say, how many files at most: None = all)
COLLECTIONS = {
    "bach": ("chorale", None),
    "oneills1850": ("tune", None),
    "ryansMammoth": ("tune", None),
    "nottingham-dataset": ("tune", None),
    "airdsAirs": ("air", None),
    "miscFolk": ("tune", None),
    "essenFolksong": ("folk song", 12),     # 12 of its 31 files (about 2,500 of its 8,500 songs), for balance
}
LICENCE = ("music21 corpus: encodings distributed with music21 (BSD-3-Clause software) with the encoders' "
           "permission; the compositions are public domain (see music21/corpus/license.txt)")

# style words found in ABC rhythm fields (R:), titles and Nottingham file names
STYLE_WORDS = [("slip jig", "slip jig"), ("slipjig", "slip jig"), ("double jig", "jig"), ("single jig", "jig"),
               ("jig", "jig"), ("reel", "reel"), ("hornpipe", "hornpipe"), ("hpps", "hornpipe"),
               ("strathspey", "strathspey"), ("waltz", "waltz"), ("march", "march"), ("polka", "polka"),
               ("slide", "slide"), ("morris", "morris"), ("playford", "country dance"), ("xmas", "carol"),
               ("carol", "carol"), ("air", "air"), ("lament", "air"), ("song", "air")]


@dataclass
class Piece:
    source: str
    title: str
    group: str
    split: str
    style: str
    meter: str
    tonic: int                   # pitch class, C = 0
    mode: str                    # "major" | "minor"
    measures: list[list[tuple[int, int]]] = field(default_factory=list)

    @property
    def notes(self) -> list[tuple[int, int]]:
        return [e for bar in self.measures for e in bar]


def corpus_path(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "music" / "melodies.jsonl"


def normalise_title(title: str) -> str:
    t = re.sub(r"[^a-z ]", "", title.lower())
    t = re.sub(r"\b(the|a|an|no|reel|jig|hornpipe|waltz|march|polka|strathspey|slip|double)\b", " ", t)
    return " ".join(t.split()) or title.lower()


def style_of(*texts: str, default: str) -> str:
    joined = " ".join(t.lower() for t in texts if t)
    for word, style in STYLE_WORDS:
        if re.search(rf"\b{word}", joined):
            return style
    return default


def _abc_headers(path: Path) -> dict[str, dict[str, str]]:
    """X: number -> {"R": rhythm, "T": first title} for each tune of an ABC file (music21 keeps no R:)."""
    heads: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"^([A-Za-z]):\s*(.*)$", line)
        if not m:
            continue
        k, v = m.group(1), m.group(2).strip()
        if k == "X":
            current = heads.setdefault(v, {})
        elif current is not None and k in "RT" and k not in current:
            current[k] = v
    return heads


def _melody(part) -> tuple[list[list[tuple[int, int]]], str] | None:
    """A music21 part -> (bars of (pitch, ticks), meter), or None when the part does not fit the encoding."""
    from music21 import meter as m21meter

    bars, meters = [], set()
    for measure in part.getElementsByClass("Measure"):
        for ts in measure.getElementsByClass(m21meter.TimeSignature):
            meters.add(ts.ratioString)
        events = []
        for n in measure.recurse().notesAndRests:
            ql = float(n.quarterLength)
            if ql == 0:                                   # grace notes take no time
                continue
            ticks = round(ql * TICKS)
            if abs(ql * TICKS - ticks) > 1e-3 or not 0 < ticks <= MAX_DUR:
                return None
            if n.isRest:
                pitch = -1
            else:
                pitch = max(p.midi for p in n.pitches)
                if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
                    return None
            if events and pitch == -1 and events[-1][0] == -1:     # merge rests
                events[-1] = (-1, events[-1][1] + ticks)
            else:
                events.append((pitch, ticks))
        if events:
            bars.append(events)
    meters.discard("1/16")                                # music21 reads some ABC unit lengths as one
    if len(meters) != 1 or len(bars) < 4:
        return None
    meter = meters.pop()
    return (bars, meter) if meter in METERS else None


def _key(score, bars) -> tuple[int, str] | None:
    from music21 import key as m21key

    found = list(score.recurse().getElementsByClass(m21key.KeySignature))
    if not found:
        return None
    k = found[0]
    if isinstance(k, m21key.Key):                         # ABC K: fields give tonic and mode
        mode = "minor" if k.mode in ("minor", "dorian", "phrygian", "aeolian", "locrian") else "major"
        return k.tonic.pitchClass, mode
    # a bare key signature (the chorales): the major key or its relative minor, whichever the final note is
    major = k.asKey("major").tonic.pitchClass
    last = next((p for bar in reversed(bars) for p, _ in reversed(bar) if p >= 0), None)
    if last is not None and last % 12 == (major + 9) % 12:
        return (major + 9) % 12, "minor"
    return major, "major"


def _parse_file(job: tuple[str, str, str]) -> list[dict]:
    """One corpus file -> its pieces as dicts (run in a worker process)."""
    from music21 import converter

    collection, path_s, default_style = job
    path = Path(path_s)
    heads = _abc_headers(path) if path.suffix == ".abc" else {}
    try:
        parsed = converter.parse(path)
    except Exception:                                      # noqa: BLE001 - a few corpus files do not parse
        return []
    scores = list(parsed.scores) if hasattr(parsed, "scores") else [parsed]
    out = []
    for score in scores:
        if not score.parts:
            continue
        named = [p for p in score.parts if "soprano" in (p.partName or "").lower()]
        got = _melody(named[0] if named else score.parts[0])   # chorales: the soprano; ABC: the tune
        if got is None:
            continue
        bars, meter = got
        key = _key(score, bars)
        if key is None:
            continue
        md = score.metadata
        title = (md.title if md and md.title else path.stem) or path.stem
        head = heads.get(str(md.number) if md and md.number else "", {})
        style = default_style if collection in ("bach", "essenFolksong") else \
            style_of(head.get("R", ""), title, path.stem, default=default_style)
        group = f"{collection}:{path.stem}" if collection == "bach" else normalise_title(title)
        out.append(asdict(Piece(source=collection, title=title, group=group, split=split_of(group),
                                style=style, meter=meter, tonic=key[0], mode=key[1], measures=bars)))
    return out


def corpus_files() -> list[tuple[str, str, str]]:
    from music21 import corpus

    root = Path(corpus.__file__).parent
    jobs = []
    for collection, (style, limit) in COLLECTIONS.items():
        if collection == "bach":
            files = sorted(p for p in (root / "bach").glob("bwv*.mxl"))
        else:
            files = sorted((root / collection).glob("*.abc"))
        jobs += [(collection, str(p), style) for p in files[:limit]]
    return jobs


def build_corpus(settings: Settings | None = None, workers: int = 2, progress: bool = True) -> Path:
    """Parse every corpus file into melodies.jsonl (atomically) and return its path."""
    try:
        import music21  # noqa: F401
    except ImportError:
        raise SystemExit("music21 is not installed: run `make setup` (or pip install music21==10.5.1)") from None
    path = corpus_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    jobs = corpus_files()
    pieces: list[dict] = []
    from tqdm import tqdm
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for got in tqdm(pool.map(_parse_file, jobs, chunksize=1), total=len(jobs), disable=not progress,
                        desc="parsing music21 corpus", unit="file"):
            pieces += got
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for p in pieces:
            f.write(json.dumps(p) + "\n")
    tmp.replace(path)
    return path


def load_corpus(split: str | None = None, settings: Settings | None = None) -> list[Piece]:
    path = corpus_path(settings)
    if not path.exists():
        raise FileNotFoundError(f"no music corpus at {path}: run `conjure music data` first (about 10 minutes)")
    pieces = []
    with path.open() as f:
        for line in f:
            d = json.loads(line)
            if split is None or d["split"] == split:
                d["measures"] = [[tuple(e) for e in bar] for bar in d["measures"]]
                pieces.append(Piece(**d))
    return pieces


def describe(pieces: list[Piece]) -> dict:
    """Counts by source, split, style, meter and mode (for the model card)."""
    return {k: dict(Counter(getattr(p, k) for p in pieces).most_common())
            for k in ("source", "split", "style", "meter", "mode")} | {"pieces": len(pieces)}
