"""Pairwise preference: the Bradley-Terry fit recovers known strengths from simulated votes (directly and through
the blind vote store), its intervals cover the truth, ties count half, the store survives reopening and a
killed process, pairs render with a real (random tiny) model, and `conjure prefer` rejects bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conjure.cli import app
from conjure.config import REPO_ROOT, Settings, get_settings
from conjure.db import reset_engines
from conjure.evaluation.preference import (AlreadyRated, PreferencePair, PreferenceStore, bradley_terry, fit_scores,
                                           make_pairs, side_by_side, win_matrix)

TRUTH = np.array([-1.2, -0.5, 0.0, 0.6, 1.1])   # log strengths, centred


def simulate(truth: np.ndarray, n: int, rng: np.random.Generator, tie_rate: float = 0.0):
    """n votes between random distinct contestants: i beats j with probability 1 / (1 + exp(t_j - t_i))."""
    k = len(truth)
    i = rng.integers(0, k, n)
    j = (i + rng.integers(1, k, n)) % k
    p = 1.0 / (1.0 + np.exp(truth[j] - truth[i]))
    score = (rng.random(n) < p).astype(float)
    score[rng.random(n) < tie_rate] = 0.5
    return i, j, score


def png(path: Path, color: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path)
    return path.name


def study_with_pairs(store: PreferenceStore, name: str, k: int, n_pairs: int, seed: int = 0) -> None:
    """A study of k contestants and n_pairs pairs of fake images (contestant c's image has red = 10 c)."""
    store.create_study(name, [{"steps": 1 + c} for c in range(k)], seed=seed)
    rng = np.random.default_rng(seed)
    folder = store.folder(name)
    for p in range(n_pairs):
        a, b = rng.choice(k, 2, replace=False)
        fa, fb = (png(folder / f"{p}-{c}.png", (10 * c, 0, 0)) for c in (a, b))
        store.add_pair(name, f"prompt {p}", p, int(a), int(b), fa, fb, bool(rng.integers(2)))


@pytest.fixture
def store(tmp_path) -> PreferenceStore:
    return PreferenceStore(Settings(home=tmp_path / "home"))


# ---- the fit -------------------------------------------------------------------------------------------

def test_recovers_a_known_ranking_from_simulated_votes():
    i, j, score = simulate(TRUTH, 4000, np.random.default_rng(0))
    theta = bradley_terry(win_matrix(len(TRUTH), i, j, score))
    assert list(np.argsort(theta)) == list(np.argsort(TRUTH))
    assert abs(theta.mean()) < 1e-9
    assert np.max(np.abs(theta - TRUTH)) < 0.15


def test_mm_fixed_point_solves_the_likelihood_equations():
    rng = np.random.default_rng(1)
    wins = rng.integers(0, 20, (4, 4)).astype(float)
    np.fill_diagonal(wins, 0)
    prior = 1.0
    p = np.exp(bradley_terry(wins, prior, tol=1e-12))
    aug = wins + 0.5 * prior * (1 - np.eye(4))
    n = aug + aug.T
    expected = (n * p[:, None] / (p[:, None] + p[None, :])).sum(1)   # E[wins of i] under the fit
    np.testing.assert_allclose(expected, aug.sum(1), rtol=1e-8)


def test_ties_count_as_half_a_win_each():
    # 3 wins and 2 ties for contestant 0: 4 wins against 1, plus the prior's half win each way: odds 4.5 / 1.5
    theta = bradley_terry(win_matrix(2, np.zeros(5, int), np.ones(5, int), np.array([1, 1, 1, 0.5, 0.5])))
    assert theta[0] - theta[1] == pytest.approx(np.log(3.0), abs=1e-7)
    all_ties = win_matrix(3, np.array([0, 1, 2]), np.array([1, 2, 0]), np.full(3, 0.5))
    np.testing.assert_allclose(bradley_terry(all_ties), 0.0, atol=1e-9)
    # many ties shrink the scores towards 0 but keep the order
    i, j, score = simulate(TRUTH, 6000, np.random.default_rng(2), tie_rate=0.3)
    assert list(np.argsort(bradley_terry(win_matrix(len(TRUTH), i, j, score)))) == list(np.argsort(TRUTH))


def test_undefeated_and_winless_contestants_stay_finite():
    i, j, score = np.zeros(10, int), np.ones(10, int), np.ones(10)
    theta, ci = fit_scores(2, i, j, score, n_boot=200)
    assert np.all(np.isfinite(theta)) and np.all(np.isfinite(ci))
    assert theta[0] > theta[1] and ci[0, 0] > 0
    stronger_prior = bradley_terry(win_matrix(2, i, j, score), prior=4.0)
    assert 0 < stronger_prior[0] < theta[0]   # the prior shrinks towards equal strength


def test_intervals_cover_the_truth_in_most_seeds():
    truth = TRUTH[:4] - TRUTH[:4].mean()
    covered, widths = [], []
    for seed in range(20):
        i, j, score = simulate(truth, 400, np.random.default_rng(100 + seed))
        theta, ci = fit_scores(4, i, j, score, n_boot=300, seed=seed)
        assert np.all((ci[:, 0] <= theta) & (theta <= ci[:, 1]))
        covered += list((ci[:, 0] <= truth) & (truth <= ci[:, 1]))
        widths += list(ci[:, 1] - ci[:, 0])
    assert np.mean(covered) >= 0.85          # nominal 0.95; 80 intervals
    assert 0.2 < np.median(widths) < 1.0      # informative at 400 votes, not degenerate


def test_bootstrap_is_seeded():
    i, j, score = simulate(TRUTH, 300, np.random.default_rng(3))
    _, ci_a = fit_scores(5, i, j, score, n_boot=200, seed=7)
    _, ci_b = fit_scores(5, i, j, score, n_boot=200, seed=7)
    _, ci_c = fit_scores(5, i, j, score, n_boot=200, seed=8)
    np.testing.assert_array_equal(ci_a, ci_b)
    assert not np.array_equal(ci_a, ci_c)


def test_win_matrices_of_vote_sets_match_one_by_one():
    i, j, score = simulate(TRUTH, 50, np.random.default_rng(5), tie_rate=0.2)
    idx = np.random.default_rng(6).integers(0, 50, (3, 50))
    batched = win_matrix(5, i[idx], j[idx], score[idx])
    assert batched.shape == (3, 5, 5)
    for b in range(3):
        np.testing.assert_array_equal(batched[b], win_matrix(5, i[idx[b]], j[idx[b]], score[idx[b]]))
    assert win_matrix(5, i, j, score).sum() == 50


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="no votes"):
        fit_scores(2, np.array([], int), np.array([], int), np.array([]))
    with pytest.raises(ValueError, match="prior must be > 0"):
        bradley_terry(np.zeros((2, 2)), prior=0.0)


# ---- the store -----------------------------------------------------------------------------------------

def test_known_ranking_recovered_through_the_blind_store(store):
    """Raters who see only left and right, answering from known strengths: the store maps votes back."""
    truth = TRUTH[:4] - TRUTH[:4].mean()
    study_with_pairs(store, "sim", 4, 300)
    rng = np.random.default_rng(4)
    with store.sessions() as s:
        pairs = {p.id: p for p in s.query(PreferencePair)}
    for rater in ("ann", "ben", "cat"):
        while (view := store.next_pair("sim", rater)) is not None:
            shown = {side: int(path.stem.split("-")[1]) for side, path in (("left", view.left), ("right", view.right))}
            assert {shown["left"], shown["right"]} == {pairs[view.id].a, pairs[view.id].b}
            p_left = 1 / (1 + np.exp(truth[shown["right"]] - truth[shown["left"]]))
            store.vote("sim", view.id, "left" if rng.random() < p_left else "right", rater)
    result = store.scores("sim", n_boot=300)
    assert result.n_votes == 900 and result.n_pairs == 300
    assert [c.index for c in result.contestants] == list(np.argsort(-truth))
    for c in result.contestants:
        assert abs(c.score - truth[c.index]) < 0.35 and c.ci_low < c.score < c.ci_high
        assert c.wins + c.losses + c.ties == c.n
        assert c.elo == pytest.approx(1000 + 400 / np.log(10) * c.score)
    assert sum(c.n for c in result.contestants) == 2 * 900


def test_sides_are_random_and_ties_are_stored(store):
    study_with_pairs(store, "sides", 2, 40)
    with store.sessions() as s:
        a_left = [p.a_left for p in s.query(PreferencePair)]
    assert 5 < sum(a_left) < 35   # both orders occur
    view = store.next_pair("sides", "ann")
    store.vote("sides", view.id, "tie", "ann")
    result = store.scores("sides", n_boot=50)
    assert [c.ties for c in result.contestants] == [1, 1] and result.contestants[0].score == pytest.approx(0)


def test_next_pair_prefers_the_least_rated_and_skips(store):
    study_with_pairs(store, "order", 2, 3)
    first = store.next_pair("order", "ann")
    store.vote("order", first.id, "left", "ann")
    assert store.next_pair("order", "ben").id != first.id          # an unrated pair comes first
    second = store.next_pair("order", "ann")
    third = store.next_pair("order", "ann", skip=[second.id])
    assert len({first.id, second.id, third.id}) == 3
    assert store.next_pair("order", "ann", skip=[second.id, third.id]) is None


def test_store_rejects_bad_input(store):
    with pytest.raises(LookupError, match="unknown study 'nope'; known studies: none yet"):
        store.scores("nope")
    study_with_pairs(store, "empty", 2, 1)
    with pytest.raises(ValueError, match="study 'empty' has no votes yet"):
        store.scores("empty")
    with pytest.raises(ValueError, match="exists already"):
        store.create_study("empty", [{"steps": 1}, {"steps": 2}])
    with pytest.raises(ValueError, match="unknown contestant setting"):
        store.create_study("x", [{"stepz": 1}, {"steps": 2}])
    with pytest.raises(ValueError, match="2 to 8 contestants"):
        store.create_study("x", [{"steps": 1}])
    with pytest.raises(ValueError, match="the same"):
        store.create_study("x", [{"steps": 1}, {"steps": 1}])
    with pytest.raises(ValueError, match="not allowed"):
        store.create_study("../x", [{"steps": 1}, {"steps": 2}])
    pair = store.next_pair("empty", "ann")
    with pytest.raises(ValueError, match="choice must be one of"):
        store.vote("empty", pair.id, "up", "ann")
    with pytest.raises(LookupError, match="has no pair 999"):
        store.vote("empty", 999, "left", "ann")
    store.vote("empty", pair.id, "left", "ann")
    with pytest.raises(AlreadyRated):
        store.vote("empty", pair.id, "right", "ann")


def test_votes_survive_reopening(store, tmp_path):
    study_with_pairs(store, "durable", 3, 6)
    for _ in range(4):
        store.vote("durable", store.next_pair("durable", "ann").id, "left", "ann")
    before = store.scores("durable", n_boot=100).to_dict()
    reset_engines()   # as a new process would: no cached engine or connection
    again = PreferenceStore(Settings(home=tmp_path / "home"))
    assert again.scores("durable", n_boot=100).to_dict() == before
    assert again.summaries()[0] | {"created_at": 0} == {"name": "durable", "pairs": 6, "votes": 4, "created_at": 0,
                                                       "contestants": ["conjure-tiny steps=1", "conjure-tiny steps=2",
                                                                       "conjure-tiny steps=3"]}


def test_a_vote_survives_a_killed_process(store, tmp_path):
    study_with_pairs(store, "crash", 2, 2)
    pair = store.next_pair("crash", "ann").id
    code = ("import os, signal\nfrom conjure.config import Settings\n"
            "from conjure.evaluation.preference import PreferenceStore\n"
            f"PreferenceStore(Settings(home={str(tmp_path / 'home')!r})).vote('crash', {pair}, 'right', 'ann')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO_ROOT / "src"),
                                                             "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == -9
    reset_engines()
    i, j, score = PreferenceStore(Settings(home=tmp_path / "home")).outcomes("crash")
    assert len(score) == 1


# ---- pairs from the real pipeline ----------------------------------------------------------------------

def test_make_pairs_renders_with_a_real_model(tmp_path, tiny_model_dir):
    from conjure.pipelines.registry import add_model
    settings = Settings(home=tmp_path / "home", default_model="test-tiny")
    add_model(tiny_model_dir, "test-tiny", settings)
    store = PreferenceStore(settings)
    store.create_study("real", [{"steps": 1, "size": 64}, {"steps": 2, "size": 64}], seed=5)
    summary = make_pairs(store, "real", ["red apple", "blue star"], 3, responsible=False)
    assert summary == {"study": "real", "pairs": 3, "skipped": 0, "folder": str(store.folder("real"))}
    with store.sessions() as s:
        pairs = list(s.query(PreferencePair).order_by(PreferencePair.id))
    assert [(p.prompt, p.seed) for p in pairs] == [("red apple", 5), ("blue star", 6), ("red apple", 7)]
    for p in pairs:
        for rel in (p.image_a, p.image_b):
            with Image.open(store.folder("real") / rel) as im:
                assert im.size == (64, 64)
    view = store.next_pair("real", "ann")
    assert view.left.name.endswith("-left.png") and view.right.name.endswith("-right.png")   # names stay blind
    out = side_by_side(view.left, view.right, tmp_path / "pair.png")
    with Image.open(out) as im:
        assert im.size == (64 + 16 + 64, 64)
    with pytest.raises(ValueError, match="number of pairs"):
        make_pairs(store, "real", ["red apple"], 0)


# ---- the command line ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["new", "s1", "--a", "{steps: 1}", "--b", "{}"], "--a is not valid JSON"),
    (["new", "s1", "--a", "[1]", "--b", "{}"], "--a must be a JSON object"),
    (["new", "s1", "--a", '{"stepz": 1}', "--b", "{}"], "unknown contestant setting"),
    (["new", "s1", "--a", '{"steps": 1}', "--b", "{}", "--pairs", "0"], "--pairs must be between 1"),
    (["new", "s1", "--a", '{"steps": 1}', "--b", "{}", "--prompts", "no-such-suite"], "neither a prompt file"),
    (["new", "s1", "--a", '{"model": "nope"}', "--b", "{}", "--prompts", "heldout"], "unknown model 'nope'"),
    (["vote", "nope"], "unknown study 'nope'"),
    (["scores", "nope"], "unknown study 'nope'"),
])
def test_cli_bad_input_exits_2(args, words):
    result = CliRunner().invoke(app, ["prefer", *args])
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    assert "s1" not in PreferenceStore().names()   # a failed `new` leaves no study behind


def test_cli_vote_and_scores(tmp_path):
    store = PreferenceStore()
    study_with_pairs(store, "cli", 2, 4)
    runner = CliRunner()
    empty = runner.invoke(app, ["prefer", "scores", "cli"])
    assert empty.exit_code == 2 and "no votes yet" in empty.stderr
    side = tmp_path / "side.png"
    result = runner.invoke(app, ["prefer", "vote", "cli", "--rater", "ann", "--side-by-side", str(side)],
                           input="x\n1\ns\nt\nq\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("prompt: ") == 4 and "2 rated now" in result.stdout and side.is_file()
    result = runner.invoke(app, ["prefer", "scores", "cli", "--json", "--boot", "50"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["n_votes"] == 2 and {c["ties"] for c in body["contestants"]} == {1.0}
    table = runner.invoke(app, ["prefer", "scores", "cli", "--boot", "50"]).stdout
    assert "BT score" in table and "conjure-tiny steps=1" in table
    listed = runner.invoke(app, ["prefer", "list"]).stdout
    assert "cli: 4 pairs, 2 votes" in listed
    # the rest of the pairs, then nothing left
    rest = runner.invoke(app, ["prefer", "vote", "cli", "--rater", "ann"], input="2\n2\n")
    assert rest.exit_code == 0 and "no pairs left for ann" in rest.stdout
    assert get_settings().home in store.folder("cli").parents


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    """A home of this test's own, so that the model it registers is seen by no other test."""
    monkeypatch.setenv("CONJURE_HOME", str(tmp_path / "own-home"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()   # before monkeypatch restores the session's home


def test_cli_new_renders_a_study(own_home, tmp_path, tiny_model_dir, monkeypatch):
    """`conjure prefer new` end to end with the random tiny model; the guard is left off only to keep this fast."""
    import conjure.pipelines
    from conjure.pipelines.registry import add_model
    add_model(tiny_model_dir, "test-tiny", own_home)
    load = conjure.pipelines.load_pipeline
    monkeypatch.setattr(conjure.pipelines, "load_pipeline", lambda *a, **kw: load(*a, **{**kw, "responsible": False}))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "red apple"}\n{"prompt": "blue star"}\n')
    result = CliRunner().invoke(app, ["prefer", "new", "fresh", "--a", '{"model": "test-tiny", "steps": 1, "size": 64}',
                                      "--b", '{"model": "test-tiny", "steps": 2, "size": 64}',
                                      "--more", '{"model": "test-tiny", "steps": 3, "size": 64}',
                                      "--prompts", str(prompts), "--pairs", "3"])
    assert result.exit_code == 0, result.output
    assert "study 'fresh': 3 pairs in" in result.stdout
    store = PreferenceStore()
    with store.sessions() as s:
        study_id = store.study("fresh").id
        pairs = [(p.a, p.b) for p in s.query(PreferencePair).filter_by(study_id=study_id).order_by(PreferencePair.id)]
    assert pairs == [(0, 1), (0, 2), (1, 2)]   # every two contestants in turn
    again = CliRunner().invoke(app, ["prefer", "new", "fresh", "--a", "{}", "--b", '{"steps": 2}',
                                     "--prompts", str(prompts)])
    assert again.exit_code == 2 and "exists already" in again.stderr
