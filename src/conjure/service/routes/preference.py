"""Blind pairwise preference over HTTP (the studio's Rate panel): list studies, the next pair for the current
user, a vote, and Bradley-Terry scores. Studies and their pairs are made with `conjure prefer new`.

The rater is the API key's user (the local admin in keyless mode). A pair's images come inline as data: URIs
named only left and right, so nothing in the answer says which contestant made which.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from conjure.evaluation.preference import AlreadyRated, PairView, PreferenceStore
from conjure.service.core import ServiceError
from conjure.service.deps import Context, CurrentUser, RateLimitedUser
from conjure.service.schemas import ErrorBody

router = APIRouter(prefix="/v1/preference", tags=["preference"])
ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 404: {"model": ErrorBody},
          409: {"model": ErrorBody}, 429: {"model": ErrorBody}}
StudyName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
MAX_SKIP = 100


class StudyPublic(BaseModel):
    name: str
    contestants: list[str] = Field(description="Contestant labels (models or settings).")
    pairs: int
    votes: int
    created_at: float


class StudiesPublic(BaseModel):
    data: list[StudyPublic]


class PairPublic(BaseModel):
    id: int
    prompt: str
    left_image: str = Field(description="The left image as a data: URI (PNG).")
    right_image: str = Field(description="The right image as a data: URI (PNG).")
    votes: int = Field(description="Votes this pair has from all raters.")


class NextPairPublic(BaseModel):
    study: str
    pair: PairPublic | None = Field(description="None when this rater has rated (or skipped) every pair.")


class VoteCreate(BaseModel):
    pair_id: int = Field(ge=1, description="The pair's id from the next-pair answer.")
    choice: Literal["left", "right", "tie"] = Field(description="Which image is better, as shown.")


class VotePublic(BaseModel):
    id: int
    pair_id: int
    choice: str
    rater: str


class ContestantScorePublic(BaseModel):
    index: int
    label: str
    spec: dict
    score: float = Field(description="Bradley-Terry log strength, centred on 0.")
    ci_low: float = Field(description="95% bootstrap interval of score.")
    ci_high: float
    elo: float = Field(description="The score on the Elo scale (1000 = the average contestant).")
    elo_low: float
    elo_high: float
    wins: int
    losses: int
    ties: int
    n: int


class ScoresPublic(BaseModel):
    study: str
    n_votes: int
    n_pairs: int
    n_boot: int
    seed: int
    prior: float
    contestants: list[ContestantScorePublic] = Field(description="Best first.")


def get_store(ctx: Context) -> PreferenceStore:
    return PreferenceStore(ctx.settings)


Store = Annotated[PreferenceStore, Depends(get_store)]


def _study(store: PreferenceStore, name: str) -> None:
    try:
        store.study(name)
    except LookupError as e:
        raise ServiceError(404, str(e)) from None


def _data_uri(path) -> str:
    try:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    except FileNotFoundError:
        raise ServiceError(404, f"an image of this pair is missing from the study folder: {path.name}") from None


def _pair_public(pair: PairView) -> PairPublic:
    return PairPublic(id=pair.id, prompt=pair.prompt, left_image=_data_uri(pair.left),
                      right_image=_data_uri(pair.right), votes=pair.votes)


@router.get("/studies", response_model=StudiesPublic, responses=ERRORS, summary="List preference studies")
def list_studies(store: Store, user: CurrentUser) -> StudiesPublic:
    return StudiesPublic(data=[StudyPublic(**s) for s in store.summaries()])


@router.get("/studies/{name}/next", response_model=NextPairPublic, responses=ERRORS,
            summary="The next pair for the current rater")
def next_pair(name: StudyName, store: Store, user: CurrentUser,
              skip: Annotated[list[int], Query(max_length=MAX_SKIP, description="Pair ids to pass over "
                                               "(skipped in this session).")] = []) -> NextPairPublic:
    """The least-rated pair this user has not rated; `pair` is null when none is left."""
    _study(store, name)
    pair = store.next_pair(name, user.name, skip=skip)
    return NextPairPublic(study=name, pair=_pair_public(pair) if pair else None)


@router.post("/studies/{name}/votes", status_code=201, response_model=VotePublic, responses=ERRORS,
             summary="Vote on a pair")
def vote(name: StudyName, body: VoteCreate, store: Store, user: RateLimitedUser) -> VotePublic:
    """One vote per rater and pair (409 for a second); it is stored before the answer is sent."""
    _study(store, name)
    try:
        vote_id = store.vote(name, body.pair_id, body.choice, user.name)
    except LookupError as e:
        raise ServiceError(404, str(e)) from None
    except AlreadyRated as e:
        raise ServiceError(409, str(e)) from None
    except ValueError as e:
        raise ServiceError(400, str(e)) from None
    return VotePublic(id=vote_id, pair_id=body.pair_id, choice=body.choice, rater=user.name)


@router.get("/studies/{name}/scores", response_model=ScoresPublic, responses=ERRORS,
            summary="Bradley-Terry scores with 95% intervals")
def scores(name: StudyName, store: Store, user: CurrentUser,
           boot: Annotated[int, Query(ge=1, le=10_000, description="Bootstrap rounds.")] = 1000,
           seed: Annotated[int, Query(ge=0, le=2**32 - 1, description="Seed of the bootstrap.")] = 0) -> ScoresPublic:
    """409 while the study has no votes."""
    _study(store, name)
    try:
        result = store.scores(name, n_boot=boot, seed=seed)
    except ValueError as e:
        raise ServiceError(409, str(e)) from None
    return ScoresPublic(**result.to_dict())
