"""Key finding, meter estimation, n-gram novelty and the adherence summary on hand-built melodies."""

import numpy as np
import pytest

from conjure.music.analysis import (
    TICKS,
    NgramIndex,
    adherence_summary,
    bar_ticks,
    estimate_key,
    estimate_meter,
    intervals,
    key_name,
    meter_report,
    novelty_rate,
    parse_key,
    parse_meter,
    wilson_interval,
)

Q, E = TICKS, TICKS // 2  # quarter, eighth

# C major: scale up and down, then the tonic arpeggio, ending on C (MIDI 60 = middle C).
C_MAJOR_TUNE = [[(60, Q), (62, Q), (64, Q), (65, Q)], [(67, Q), (69, Q), (71, Q), (72, Q)],
                [(72, Q), (71, Q), (69, Q), (67, Q)], [(65, Q), (64, Q), (62, Q), (60, Q)],
                [(60, Q), (64, Q), (67, Q), (72, Q)], [(67, Q), (64, Q), (60, 2 * Q)]]
# A harmonic minor: the raised seventh G# leads back to A; it opens and closes on the tonic triad.
A_MINOR_TUNE = [[(57, Q), (60, Q), (64, Q), (60, Q)], [(57, Q), (59, Q), (60, Q), (62, Q)],
                [(64, Q), (65, Q), (68, Q), (69, Q)], [(68, Q), (64, Q), (59, Q), (62, Q)],
                [(60, Q), (59, Q), (56, Q), (57, Q)], [(64, Q), (60, Q), (57, 2 * Q)]]


def transpose(measures, k):
    return [[(p + k if p >= 0 else p, d) for p, d in bar] for bar in measures]


def rhythm(pitches, pattern, bars):
    """Pour pitches (cycled) into `bars` bars of the duration pattern."""
    it = iter(pitches * 10)
    return [[(next(it), d) for d in pattern] for _ in range(bars)]


TUNE_PITCHES = [62, 64, 66, 67, 69, 71, 69, 67, 66, 64, 62, 66, 69, 74, 69, 66]


# ---------------------------------------------------------------- key

def test_c_major_tune_is_c_major():
    tonic, mode, r = estimate_key(C_MAJOR_TUNE)
    assert (tonic, mode) == (0, "major")
    assert 0.5 < r <= 1.0


@pytest.mark.parametrize("k", range(12))
def test_key_follows_transposition(k):
    tonic, mode, _ = estimate_key(transpose(C_MAJOR_TUNE, k))
    assert (tonic, mode) == (k % 12, "major")


def test_harmonic_minor_tune_is_a_minor():
    assert estimate_key(A_MINOR_TUNE)[:2] == (9, "minor")


def test_rests_are_ignored_by_key():
    with_rests = [bar + [(-1, 10 * Q)] for bar in C_MAJOR_TUNE]
    assert estimate_key(with_rests) == pytest.approx(estimate_key(C_MAJOR_TUNE))


@pytest.mark.parametrize("melody", [[], [[]], [[(-1, Q), (-1, Q)]]])
def test_key_of_no_notes_raises(melody):
    with pytest.raises(ValueError, match="no notes"):
        estimate_key(melody)


# ---------------------------------------------------------------- key names

@pytest.mark.parametrize("mode", ["major", "minor"])
@pytest.mark.parametrize("tonic", range(12))
def test_key_name_round_trip(tonic, mode):
    assert parse_key(key_name(tonic, mode)) == (tonic, mode)


@pytest.mark.parametrize("text,key", [
    ("D major", (2, "major")), ("d minor", (2, "minor")), ("Bb", (10, "major")), ("F#m", (6, "minor")),
    ("A minor", (9, "minor")), ("E dorian", (4, "minor")), ("G Mixolydian", (7, "major")), ("Dmix", (2, "major")),
    ("Ador", (9, "minor")), ("bbm", (10, "minor")), ("Cb", (11, "major")), (" e phrygian ", (4, "minor")),
    ("F lydian", (5, "major")), ("B", (11, "major")),
])
def test_parse_key_forms(text, key):
    assert parse_key(text) == key


@pytest.mark.parametrize("text", ["", "H major", "C sharp", "Dm7", "X", "C mi", "#C"])
def test_parse_key_rejects(text):
    with pytest.raises(ValueError, match="expected a tonic"):
        parse_key(text)


def test_key_name_spelling_and_bad_mode():
    assert [key_name(t, "major").split()[0] for t in range(12)] == \
        ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    with pytest.raises(ValueError, match="major"):
        key_name(0, "dorian")


# ---------------------------------------------------------------- meter

def test_bar_ticks_and_parse_meter():
    assert [bar_ticks(m) for m in ("2/4", "3/4", "4/4", "2/2", "6/8", "9/8", "12/8", "3/8", "3/2", "6/4")] == \
        [24, 36, 48, 48, 36, 54, 72, 18, 72, 72]
    assert parse_meter(" 6/8 ") == (6, 8) and parse_meter("C") == (4, 4) and parse_meter("C|") == (2, 2)
    for bad in ("5/4", "7/8", "4", "three-four", ""):
        with pytest.raises(ValueError, match="supported: 2/4"):
            parse_meter(bad)


def test_6_8_and_3_4_are_told_apart_by_onsets():
    jig = rhythm(TUNE_PITCHES, [Q, E, Q, E], 8)  # onsets 0, 12, 18, 30: dotted-quarter groups
    waltz = rhythm(TUNE_PITCHES, [Q, Q, Q], 8)  # onsets 0, 12, 24
    assert estimate_meter(jig) == "6/8"
    assert estimate_meter(waltz) == "3/4"
    assert estimate_meter(rhythm(TUNE_PITCHES, [Q + E, E, E, E], 8)) == "6/8"  # q. e e e
    assert estimate_meter(rhythm(TUNE_PITCHES, [2 * Q, Q], 8)) == "3/4"  # h q


def test_running_eighths_do_not_decide_6_8_against_3_4():
    # A jig with a few plain eighth-note bars still reads 6/8: those bars weigh 3/4 and 6/8 beats alike.
    jig = rhythm(TUNE_PITCHES, [Q, E, Q, E], 4) + rhythm(TUNE_PITCHES, [E] * 6, 4)
    assert estimate_meter(jig) == "6/8"


def test_other_meters_and_pickup():
    reel = rhythm(TUNE_PITCHES, [E] * 8, 8)
    march = rhythm(TUNE_PITCHES, [Q, E, E], 8)
    slip_jig = rhythm(TUNE_PITCHES, [Q, E, Q, E, Q, E], 8)
    assert estimate_meter(reel) == "4/4"
    assert estimate_meter(march) == "2/4"
    assert estimate_meter(slip_jig) == "9/8"
    assert estimate_meter([[(60, E)]] + reel + [[(62, Q)]]) == "4/4"  # pickup and short last bar don't count
    assert estimate_meter(rhythm(TUNE_PITCHES, [Q, E] * 4, 8)) == "12/8"
    assert estimate_meter(rhythm(TUNE_PITCHES, [2 * Q] * 3, 8)) == "3/2"


def test_estimate_meter_none_cases():
    assert estimate_meter([[(60, Q)] * 4]) is None  # one bar
    assert estimate_meter([[(-1, 48)]] * 4) is None  # no notes
    assert estimate_meter([[(60, Q)] * 5] * 4) is None  # 5/4 is not supported


def test_meter_report_on_a_clean_tune():
    jig = [[(67, E)]] + rhythm(TUNE_PITCHES, [Q, E, Q, E], 8) + [[(62, Q + E)]]
    report = meter_report(jig, "6/8")
    assert report == {"bar_match": 1.0, "downbeat_onsets": 1.0, "estimated": "6/8", "adheres": True}
    assert meter_report(jig, "3/4")["adheres"] is False  # right bar length, wrong grouping
    assert meter_report(rhythm(TUNE_PITCHES, [E] * 8, 8), "2/2")["adheres"] is True  # 2/2 counts as 4/4


def test_meter_report_wrong_bar_lengths_and_rests():
    bars = rhythm(TUNE_PITCHES, [Q, E, Q, E], 10)
    bars[2] = bars[2][:-1]  # 30 ticks
    bars[5] = bars[5] + [(60, E)]  # 42 ticks
    bars[7] = [(-1, E)] + bars[7][1:] + [(60, Q - E)]  # opens with a rest, still 36 ticks
    report = meter_report(bars, "6/8")
    assert report["bar_match"] == pytest.approx(6 / 8)       # two short bars in eight: still the threshold
    assert report["downbeat_onsets"] == pytest.approx(7 / 8)
    assert report["estimated"] == "6/8" and report["adheres"] is True
    bars[4] = bars[4][:-1]                                   # a third wrong bar: below BAR_MATCH_MIN
    report = meter_report(bars, "6/8")
    assert report["bar_match"] == pytest.approx(5 / 8) and report["adheres"] is False


@pytest.mark.parametrize("event", [(62, 0), (62, -6), (128, Q), (-2, Q)])
def test_malformed_events_raise(event):
    with pytest.raises(ValueError, match="bad event"):
        estimate_meter([[(60, Q), event]] * 3)
    with pytest.raises(ValueError, match="bad event"):
        estimate_key([[(60, Q), event]])


# ---------------------------------------------------------------- novelty

def random_walk(seed, n_notes):
    rng = np.random.default_rng(seed)
    pitches = 60 + np.cumsum(rng.integers(-5, 6, n_notes))
    return [[(int(p), E) for p in pitches[i:i + 8]] for i in range(0, n_notes, 8)]


def test_intervals_skip_rests_and_keep_repeats():
    assert intervals([[(60, Q), (-1, Q), (60, Q)], [(67, Q), (-1, Q)], [(65, Q)]]) == [0, 7, -2]
    assert intervals([]) == []


def test_ngram_index():
    train = random_walk(0, 64)
    index = NgramIndex([train, random_walk(1, 64)])
    assert len(index) == 2 * (64 - 12)  # random walks of this length don't repeat a 12-gram
    assert index.shares(train)
    assert index.shares(transpose(train, 5))
    assert not index.shares(random_walk(2, 64))
    assert not index.shares(train[:1] + [train[1][:4]])  # 12 notes: no 12-interval run at all
    assert NgramIndex([train], n=3).shares(train[:1])
    with pytest.raises(ValueError, match="at least 1"):
        NgramIndex([train], n=0)


def test_novelty_rate():
    train = random_walk(0, 64)
    index = NgramIndex([train])
    copied = [[bar for bar in transpose(train, -3)[2:5]]]  # 24 notes lifted from the middle
    pieces = copied + [random_walk(s, 64) for s in range(10, 13)] + [train[:1]]
    assert novelty_rate(index, pieces) == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        novelty_rate(index, [])


# ---------------------------------------------------------------- summary

def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 4)[0] == 0.0 and wilson_interval(4, 4)[1] == 1.0


def test_adherence_summary():
    jig = rhythm(TUNE_PITCHES, [Q, E, Q, E], 8)  # D major tune in 6/8
    items = [
        {"measures": jig, "key": (2, "major"), "meter": "6/8"},  # both right
        {"measures": jig, "key": "D major", "meter": "3/4"},  # key right, meter wrong
        {"measures": transpose(jig, 2), "key": (2, "major"), "meter": "6/8"},  # E major: key wrong
        {"measures": [[(-1, 36)]] * 4, "key": (2, "major"), "meter": "6/8"},  # silence: both wrong
    ]
    assert estimate_key(jig)[:2] == (2, "major")
    s = adherence_summary(items)
    assert s["n"] == 4
    assert s["key_adherence"] == pytest.approx(2 / 4) and s["meter_adherence"] == pytest.approx(2 / 4)
    for name in ("key_adherence", "meter_adherence"):
        lo, hi = s[f"{name}_ci95"]
        assert 0.0 <= lo < s[name] < hi <= 1.0
        assert [lo, hi] == pytest.approx(wilson_interval(2, 4))
    with pytest.raises(ValueError):
        adherence_summary([])
