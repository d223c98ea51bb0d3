"""Human pairwise preference: blind A/B studies between models or settings, a durable vote store, and
Bradley-Terry scores with bootstrap confidence intervals.

A study names its contestants (generation settings such as `{"model": "conjure-tiny", "steps": 10}`) and holds
pairs: one prompt and seed rendered by two contestants, shown left and right in an order drawn at random when
the pair is made, so that a rater never knows which contestant is which. Votes say what the rater saw
("left", "right", "tie"); the store maps them back to contestants. Studies, pairs and votes live in conjure's
SQL store (`conjure.db`: SQLite in WAL mode by default, each vote one committed transaction); the images live
in a folder per study under `<home>/preference/`. The CLI (`conjure prefer`) and the service's studio page call
the same `PreferenceStore`.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from conjure.config import Settings, get_settings
from conjure.db import Base, session_factory

CHOICES = ("left", "right", "tie")
CONTESTANT_KEYS = ("name", "model", "steps", "guidance", "scheduler", "size", "negative_prompt")
MAX_CONTESTANTS = 8
MAX_PAIRS = 10_000
ELO_BASE, ELO_PER_NAT = 1000.0, 400.0 / math.log(10)   # Elo: P(i beats j) = 1 / (1 + 10^((R_j - R_i) / 400))
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class AlreadyRated(ValueError):
    """This rater has voted on this pair before (one vote per rater and pair)."""


# ---- tables ------------------------------------------------------------------------------------------------

class PreferenceStudy(Base):
    __tablename__ = "preference_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    contestants: Mapped[str] = mapped_column(Text)          # JSON list of settings dicts, model filled in
    seed: Mapped[int] = mapped_column(Integer)              # of the pairs' seeds and of the left/right draws
    created_at: Mapped[float] = mapped_column(Float)


class PreferencePair(Base):
    __tablename__ = "preference_pairs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("preference_studies.id", ondelete="CASCADE"), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    a: Mapped[int] = mapped_column(Integer)                 # contestant index of image_a
    b: Mapped[int] = mapped_column(Integer)
    image_a: Mapped[str] = mapped_column(String(255))      # relative to the study folder
    image_b: Mapped[str] = mapped_column(String(255))
    a_left: Mapped[bool] = mapped_column(Boolean)          # drawn at random: is image_a shown on the left?


class PreferenceVote(Base):
    __tablename__ = "preference_votes"
    __table_args__ = (UniqueConstraint("pair_id", "rater", name="uq_preference_vote_rater"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("preference_pairs.id", ondelete="CASCADE"), index=True)
    choice: Mapped[str] = mapped_column(String(5))         # as the rater saw it: left, right or tie
    rater: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)


# ---- contestants -------------------------------------------------------------------------------------------

def check_contestant(spec: dict, default_model: str) -> dict:
    """A contestant's settings with the model filled in; ValueError says what to change."""
    if not isinstance(spec, dict):
        raise ValueError(f"a contestant must be a JSON object such as {{\"steps\": 10}}, got {spec!r}")
    unknown = sorted(set(spec) - set(CONTESTANT_KEYS))
    if unknown:
        raise ValueError(f"unknown contestant setting(s) {', '.join(unknown)}; use: {', '.join(CONTESTANT_KEYS)}")
    types = {"name": str, "model": str, "steps": int, "guidance": (int, float), "scheduler": str, "size": int,
             "negative_prompt": str}
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, types[key]):
            raise ValueError(f"contestant setting '{key}' has the wrong type: {value!r}")
    return {"model": default_model, **spec}


def contestant_label(spec: dict) -> str:
    """A short readable name: the spec's own "name", else its settings (`conjure-tiny steps=10`)."""
    if spec.get("name"):
        return spec["name"]
    rest = " ".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "model"))
    return f"{spec['model']} {rest}".strip()


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"study name {name!r} is not allowed: use 1-64 letters, digits, '.', '-' or '_', "
                         "starting with a letter or digit")
    return name


# ---- Bradley-Terry -----------------------------------------------------------------------------------------

def win_matrix(k: int, i: np.ndarray, j: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Matrices (..., K, K) of wins[i, j] = how often i beat j, from votes (..., N) given as contestants i and j
    and the score of i (1 win, 0.5 tie, 0 loss); leading dimensions are separate vote sets (bootstrap replicates)."""
    i, j, score = (np.asarray(x) for x in (i, j, score))
    lead = score.shape[:-1]
    n_sets = int(np.prod(lead))                                           # 1 for a single vote set
    batch = np.repeat(np.arange(n_sets), score.shape[-1])                 # (B * N,) vote set of each vote
    i, j, score = i.reshape(-1), j.reshape(-1), score.reshape(-1).astype(np.float64)
    wins = np.zeros((n_sets, k, k))
    np.add.at(wins, (batch, i, j), score)
    np.add.at(wins, (batch, j, i), 1.0 - score)
    return wins.reshape(*lead, k, k)


def bradley_terry(wins: np.ndarray, prior: float = 1.0, tol: float = 1e-9, max_iter: int = 10_000) -> np.ndarray:
    """Centred log strengths (mean 0) from win matrices (..., K, K), by the MM algorithm.

    Hunter (2004), "MM algorithms for generalized Bradley-Terry models", Ann. Statist. 32(1): the update
    p_i <- W_i / sum_j n_ij / (p_i + p_j) raises the likelihood at every step. `prior` adds that many virtual ties
    between every two contestants (half a win each way), which keeps undefeated and winless contestants finite
    and links contestants that never met; it shrinks scores towards 0 and is negligible against many votes.
    Leading dimensions are fitted independently in one vectorised loop (bootstrap replicates).
    """
    if prior <= 0:
        raise ValueError("prior must be > 0: without it an undefeated contestant's score is infinite")
    wins = np.asarray(wins, dtype=np.float64)
    k = wins.shape[-1]
    off = 1.0 - np.eye(k)
    wins = wins + 0.5 * prior * off
    n = wins + np.swapaxes(wins, -1, -2)                                   # (..., K, K) comparisons
    w = wins.sum(-1)                                                        # (..., K) total wins
    log_p = np.zeros(wins.shape[:-1])
    for _ in range(max_iter):
        p = np.exp(log_p)
        denom = (n / (p[..., :, None] + p[..., None, :])).sum(-1)            # (..., K)
        new = np.log(w) - np.log(denom)
        new -= new.mean(-1, keepdims=True)
        done = np.max(np.abs(new - log_p)) < tol
        log_p = new
        if done:
            break
    return log_p


@dataclass
class ContestantScore:
    index: int
    label: str
    spec: dict
    score: float          # Bradley-Terry log strength, centred: P(i beats j) = 1 / (1 + exp(s_j - s_i))
    ci_low: float         # 95% bootstrap percentile interval of score
    ci_high: float
    elo: float            # the same on the Elo scale (1000 = the average contestant)
    elo_low: float
    elo_high: float
    wins: int
    losses: int
    ties: int
    n: int                # votes on pairs with this contestant


@dataclass
class StudyScores:
    study: str
    n_votes: int
    n_pairs: int
    n_boot: int
    seed: int
    prior: float
    contestants: list[ContestantScore]   # best first

    def to_dict(self) -> dict:
        return asdict(self)


def fit_scores(k: int, i: np.ndarray, j: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0,
               prior: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Log strengths (K,) and their 95% intervals (K, 2), by a seeded bootstrap over votes."""
    if len(score) == 0:
        raise ValueError("there are no votes to score")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    theta = bradley_terry(win_matrix(k, i, j, score), prior)
    rng = np.random.default_rng(seed)
    boots, per_batch = [], max(1, min(250, 2_000_000 // len(score)))   # bounded memory: <= 2M votes a batch
    for start in range(0, n_boot, per_batch):   # replicates in batches: one vectorised MM loop each
        idx = rng.integers(0, len(score), size=(min(per_batch, n_boot - start), len(score)))
        boots.append(bradley_terry(win_matrix(k, i[idx], j[idx], score[idx]), prior))   # (b, K)
    ci = np.percentile(np.concatenate(boots), [2.5, 97.5], axis=0).T      # (K, 2)
    return theta, ci


# ---- the store ---------------------------------------------------------------------------------------------

@dataclass
class PairView:
    """What a rater sees: the prompt and two images, never which contestant made which."""

    id: int
    study: str
    prompt: str
    left: Path
    right: Path
    votes: int


class PreferenceStore:
    """Studies, pairs and votes in conjure's SQL store, images under `<home>/preference/<study>/`."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.sessions = session_factory(self.settings.db_url)
        self.root = self.settings.home / "preference"

    def folder(self, name: str) -> Path:
        return self.root / check_study_name(name)

    # studies
    def create_study(self, name: str, contestants: list[dict], seed: int = 0) -> PreferenceStudy:
        check_study_name(name)
        if not 2 <= len(contestants) <= MAX_CONTESTANTS:
            raise ValueError(f"a study compares 2 to {MAX_CONTESTANTS} contestants, got {len(contestants)}")
        specs = [check_contestant(c, self.settings.default_model) for c in contestants]
        labels = [contestant_label(c) for c in specs]
        if len(set(labels)) < len(labels):
            raise ValueError(f"two contestants are the same ({', '.join(labels)}): give them different settings")
        row = PreferenceStudy(name=name, contestants=json.dumps(specs), seed=seed, created_at=time.time())
        try:
            with self.sessions() as s, s.begin():
                s.add(row)
        except IntegrityError:
            raise ValueError(f"a study named '{name}' exists already: choose another name") from None
        return row

    def delete_study(self, name: str) -> None:
        """Remove a study with its pairs, votes and images."""
        study = self.study(name)
        pair_ids = select(PreferencePair.id).where(PreferencePair.study_id == study.id)
        with self.sessions() as s, s.begin():
            s.execute(delete(PreferenceVote).where(PreferenceVote.pair_id.in_(pair_ids)))
            s.execute(delete(PreferencePair).where(PreferencePair.study_id == study.id))
            s.execute(delete(PreferenceStudy).where(PreferenceStudy.id == study.id))
        shutil.rmtree(self.folder(name), ignore_errors=True)

    def study(self, name: str) -> PreferenceStudy:
        with self.sessions() as s:
            row = s.scalar(select(PreferenceStudy).where(PreferenceStudy.name == name))
        if row is None:
            known = ", ".join(self.names()) or "none yet (create one with `conjure prefer new`)"
            raise LookupError(f"unknown study '{name}'; known studies: {known}")
        return row

    def names(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(PreferenceStudy.name).order_by(PreferenceStudy.created_at)))

    def summaries(self) -> list[dict]:
        """Every study with its contestants' labels and pair and vote counts."""
        with self.sessions() as s:
            studies = list(s.scalars(select(PreferenceStudy).order_by(PreferenceStudy.created_at)))
            per_study = select(PreferencePair.study_id, func.count()).group_by(PreferencePair.study_id)
            pairs = {sid: n for sid, n in s.execute(per_study)}
            votes = {sid: n for sid, n in s.execute(
                per_study.join(PreferenceVote, PreferenceVote.pair_id == PreferencePair.id))}
        return [{"name": st.name, "contestants": [contestant_label(c) for c in json.loads(st.contestants)],
                 "pairs": pairs.get(st.id, 0), "votes": votes.get(st.id, 0), "created_at": st.created_at}
                for st in studies]

    # pairs
    def add_pair(self, name: str, prompt: str, seed: int, a: int, b: int, image_a: str, image_b: str,
                 a_left: bool) -> int:
        """Record a pair whose two images are already written under the study folder; returns its id."""
        study = self.study(name)
        k = len(json.loads(study.contestants))
        if not (0 <= a < k and 0 <= b < k and a != b):
            raise ValueError(f"contestants {a} and {b} are not two of this study's {k}")
        for rel in (image_a, image_b):
            if not (self.folder(name) / rel).is_file():
                raise ValueError(f"the image '{rel}' is not in the study folder {self.folder(name)}")
        row = PreferencePair(study_id=study.id, prompt=prompt, seed=seed, a=a, b=b, image_a=image_a,
                             image_b=image_b, a_left=bool(a_left))
        with self.sessions() as s, s.begin():
            s.add(row)
        return row.id

    def next_pair(self, name: str, rater: str, skip: tuple[int, ...] | list[int] = ()) -> PairView | None:
        """The pair with the fewest votes that `rater` has not rated (nor skipped); None when all are done."""
        study = self.study(name)
        rated = select(PreferenceVote.pair_id).where(PreferenceVote.rater == rater)
        count = (select(func.count()).where(PreferenceVote.pair_id == PreferencePair.id)
                 .correlate(PreferencePair).scalar_subquery())
        q = (select(PreferencePair, count).where(PreferencePair.study_id == study.id,
                                                  PreferencePair.id.not_in(rated))
             .order_by(count, PreferencePair.id))
        if skip:
            q = q.where(PreferencePair.id.not_in(list(skip)))
        with self.sessions() as s:
            found = s.execute(q.limit(1)).first()
        if found is None:
            return None
        pair, votes = found
        folder = self.folder(name)
        left, right = (pair.image_a, pair.image_b) if pair.a_left else (pair.image_b, pair.image_a)
        return PairView(pair.id, name, pair.prompt, folder / left, folder / right, votes)

    # votes
    def vote(self, name: str, pair_id: int, choice: str, rater: str) -> int:
        """Store one vote in its own transaction (committed when this returns); returns the vote's id."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        if not rater or len(rater) > 64:
            raise ValueError("the rater's name must have 1-64 characters")
        study = self.study(name)
        row = PreferenceVote(pair_id=pair_id, choice=choice, rater=rater, created_at=time.time())
        try:
            with self.sessions() as s, s.begin():
                pair = s.get(PreferencePair, pair_id)
                if pair is None or pair.study_id != study.id:
                    raise LookupError(f"study '{name}' has no pair {pair_id}")
                s.add(row)
        except IntegrityError:
            raise AlreadyRated(f"{rater} has rated pair {pair_id} already") from None
        return row.id

    def outcomes(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every vote as (contestant i, contestant j, score of i: 1 win, 0.5 tie, 0 loss), in vote order."""
        study = self.study(name)
        with self.sessions() as s:
            rows = s.execute(select(PreferencePair.a, PreferencePair.b, PreferencePair.a_left, PreferenceVote.choice)
                             .join(PreferenceVote, PreferenceVote.pair_id == PreferencePair.id)
                             .where(PreferencePair.study_id == study.id).order_by(PreferenceVote.id)).all()
        i = np.array([r[0] for r in rows], dtype=np.int64)
        j = np.array([r[1] for r in rows], dtype=np.int64)
        a_won = [(r[3] == "left") == bool(r[2]) for r in rows]
        score = np.array([0.5 if r[3] == "tie" else float(w) for r, w in zip(rows, a_won)])
        return i, j, score

    def scores(self, name: str, n_boot: int = 1000, seed: int = 0, prior: float = 1.0) -> StudyScores:
        """Bradley-Terry scores of the study's contestants with 95% bootstrap intervals, best first."""
        study = self.study(name)
        specs = json.loads(study.contestants)
        i, j, score = self.outcomes(name)
        if len(score) == 0:
            raise ValueError(f"study '{name}' has no votes yet: rate some pairs first "
                             f"(`conjure prefer vote {name}` or the studio's Rate panel)")
        theta, ci = fit_scores(len(specs), i, j, score, n_boot=n_boot, seed=seed, prior=prior)
        with self.sessions() as s:
            n_pairs = s.scalar(select(func.count()).where(PreferencePair.study_id == study.id))
        out = []
        for c, spec in enumerate(specs):
            mine_i, mine_j = score[i == c], 1.0 - score[j == c]
            mine = np.concatenate([mine_i, mine_j])
            elo = [ELO_BASE + ELO_PER_NAT * float(v) for v in (theta[c], *ci[c])]
            out.append(ContestantScore(c, contestant_label(spec), spec, float(theta[c]), float(ci[c, 0]),
                                       float(ci[c, 1]), *elo, wins=int(np.sum(mine == 1.0)),
                                       losses=int(np.sum(mine == 0.0)), ties=int(np.sum(mine == 0.5)),
                                       n=len(mine)))
        out.sort(key=lambda x: -x.score)
        return StudyScores(name, len(score), n_pairs, n_boot, seed, prior, out)


# ---- making pairs ------------------------------------------------------------------------------------------

def read_prompts(source: str, seed: int = 0) -> list[str]:
    """Prompts from a file (.jsonl with a "prompt" field, or one prompt a line) or a prompt suite's name."""
    path = Path(source).expanduser()
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if path.suffix == ".jsonl":
            try:
                prompts = [json.loads(ln)["prompt"] for ln in lines]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}: every line must be a JSON object with a \"prompt\" field") from None
        else:
            prompts = lines
    else:
        from conjure.evaluation.report import interleave, read_suite
        try:
            prompts = [r["prompt"] for r in interleave(read_suite(source), seed)]
        except ValueError as e:
            raise ValueError(f"'{source}' is neither a prompt file nor a suite: {e}") from None
    if not prompts:
        raise ValueError(f"'{source}' holds no prompts")
    return prompts


def _request(spec: dict, prompt: str, seed: int):
    from conjure.pipelines.request import GenerationRequest
    return GenerationRequest(prompt=prompt, seed=seed, steps=spec.get("steps"), guidance=spec.get("guidance"),
                             scheduler=spec.get("scheduler"), size=spec.get("size"),
                             negative_prompt=spec.get("negative_prompt", ""))


def _png(pipe, spec: dict, prompt: str, seed: int) -> bytes | None:
    """The PNG that `spec` makes for this prompt and seed; None when the guard refuses or withholds it."""
    from conjure.pipelines.product import Refused
    try:
        result = pipe(_request(spec, prompt, seed))
    except Refused:
        return None
    if result.outputs:                                  # with a guard: the screened and stamped file
        return None if result.outputs[0].withheld else result.outputs[0].png
    buf = io.BytesIO()
    result.images[0].save(buf, format="PNG")
    return buf.getvalue()


def make_pairs(store: PreferenceStore, name: str, prompts: list[str], n_pairs: int, responsible: bool = True,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Render `n_pairs` pairs for a study with conjure's pipelines and record them.

    Pair k shows prompt k (cycling) with seed `study.seed + k` to two contestants (every two in turn), so the
    two images differ only by the contestants' settings. Each image is written atomically before its pair is
    recorded; a prompt the guard refuses (or an image it withholds) is skipped and counted.
    """
    from conjure.pipelines import load_pipeline
    if not 1 <= n_pairs <= MAX_PAIRS:
        raise ValueError(f"the number of pairs must be between 1 and {MAX_PAIRS}, got {n_pairs}")
    study = store.study(name)
    specs = json.loads(study.contestants)
    folder = store.folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    # 1. load each model once and check every contestant's settings before anything is rendered
    pipes = {}
    for spec in specs:
        if spec["model"] not in pipes:
            pipes[spec["model"]] = load_pipeline(spec["model"], settings=store.settings, responsible=responsible)
        pipes[spec["model"]].check(_request(spec, prompts[0], study.seed))
    # 2. render and record pair by pair (a stopped run keeps the pairs it finished)
    combos = list(itertools.combinations(range(len(specs)), 2))
    rng = np.random.default_rng(study.seed)
    made = skipped = 0
    for k in range(n_pairs):
        prompt, seed = prompts[k % len(prompts)], study.seed + k
        a, b = combos[k % len(combos)]
        a_left = bool(rng.integers(2))                  # drawn for every pair, so the order does not depend on skips
        files = []
        for c in (a, b):
            png = _png(pipes[specs[c]["model"]], specs[c], prompt, seed)
            side = "left" if (c == a) == a_left else "right"   # a file's name tells a rater only what they see
            files.append(None if png is None else _write(folder, f"{k:05d}-{side}.png", png))
        if None in files:
            skipped += 1
        else:
            store.add_pair(name, prompt, seed, a, b, files[0], files[1], a_left)
            made += 1
        if progress:
            progress(k + 1, n_pairs)
    return {"study": name, "pairs": made, "skipped": skipped, "folder": str(folder)}


def _write(folder: Path, rel: str, data: bytes) -> str:
    tmp = folder / (rel + ".part")
    tmp.write_bytes(data)
    tmp.replace(folder / rel)   # atomic: a killed run never leaves half a PNG under the final name
    return rel


def side_by_side(left: Path, right: Path, out: Path, gap: int = 16) -> Path:
    """Write the two images of a pair next to each other (same height) into one PNG, for any image viewer."""
    from PIL import Image
    with Image.open(left) as l_im, Image.open(right) as r_im:
        h = max(l_im.height, r_im.height)
        ims = [im.convert("RGB").resize((round(im.width * h / im.height), h)) for im in (l_im, r_im)]
    canvas = Image.new("RGB", (ims[0].width + gap + ims[1].width, h), (255, 255, 255))
    canvas.paste(ims[0], (0, 0))
    canvas.paste(ims[1], (ims[0].width + gap, 0))
    tmp = out.with_name(out.name + ".part")
    canvas.save(tmp, format="PNG")
    tmp.replace(out)
    return out
