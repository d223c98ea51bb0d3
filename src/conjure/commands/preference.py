"""`conjure prefer`: blind pairwise preference studies (new, vote, scores, list) over models or settings.

The studio's Rate panel serves the same studies and votes; see `conjure.evaluation.preference`.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

prefer_app = typer.Typer(help="Blind pairwise preference studies: make pairs, vote, Bradley-Terry scores.",
                         no_args_is_help=True)

KEYS = {"1": "left", "2": "right", "t": "tie"}


def register(app: typer.Typer) -> None:
    app.add_typer(prefer_app, name="prefer")


def _fail(message: str, code: int = 2) -> None:
    from conjure.cli import fail
    fail(message, code)


def _contestant(text: str, which: str) -> dict:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        _fail(f"{which} is not valid JSON ({e.msg}): write it like '{{\"steps\": 10}}'")
    if not isinstance(spec, dict):
        _fail(f"{which} must be a JSON object such as '{{\"steps\": 10}}', got {text}")
    return spec


def _login_name() -> str:
    try:
        return getpass.getuser() or "local"
    except (KeyError, OSError):   # no login name in some containers
        return "local"


def _store():
    from conjure.evaluation.preference import PreferenceStore
    return PreferenceStore()


def _study(store, name: str):
    try:
        return store.study(name)
    except LookupError as e:
        _fail(str(e))


@prefer_app.command("new")
def prefer_new(
    name: Annotated[str, typer.Argument(help="Study name (letters, digits, '.', '-', '_').")],
    a: Annotated[str, typer.Option("--a", help="Contestant A as JSON, e.g. '{\"steps\": 10}'.")],
    b: Annotated[str, typer.Option("--b", help="Contestant B as JSON, e.g. '{\"steps\": 25}'.")],
    more: Annotated[Optional[list[str]], typer.Option(
        "--more", help="A further contestant as JSON (repeatable).")] = None,
    prompts: Annotated[str, typer.Option(
        help="A prompt file (.txt one a line, or .jsonl) or a suite name.")] = "heldout",
    pairs: Annotated[int, typer.Option("--pairs", help="How many pairs to render.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the first pair (pair k uses seed + k) and of the sides.")] = 0,
) -> None:
    """Create a study and render its pairs (each pair: one prompt and seed, two contestants, sides at random)."""
    from tqdm import tqdm

    from conjure.evaluation.preference import MAX_PAIRS, check_contestant, check_study_name, make_pairs, read_prompts
    from conjure.config import get_settings

    # 1. check everything before anything is written
    specs = [_contestant(a, "--a"), _contestant(b, "--b")] + [_contestant(m, "--more") for m in more or []]
    if not 1 <= pairs <= MAX_PAIRS:
        _fail(f"--pairs must be between 1 and {MAX_PAIRS}, got {pairs}")
    try:
        check_study_name(name)
        for spec in specs:
            check_contestant(spec, get_settings().default_model)
        prompt_list = read_prompts(prompts, seed)
    except ValueError as e:
        _fail(str(e))
    store = _store()
    if name in store.names():
        _fail(f"a study named '{name}' exists already: choose another name")
    # 2. create the study, then render and record pairs one by one
    try:
        store.create_study(name, specs, seed=seed)
    except ValueError as e:
        _fail(str(e))
    bar = tqdm(total=pairs, desc="rendering pairs", unit="pair", file=sys.stderr, leave=False)
    try:
        summary = make_pairs(store, name, prompt_list, pairs, progress=lambda i, n: bar.update(i - bar.n))
    except ValueError as e:   # an unknown model, or settings that it refuses
        bar.close()
        made = next(r["pairs"] for r in store.summaries() if r["name"] == name)
        if not made:
            store.delete_study(name)   # nothing to keep: the name is free again
        _fail(str(e) + (f" (the study keeps the {made} pairs made before this)" if made else ""))
    bar.close()
    typer.echo(f"study '{name}': {summary['pairs']} pairs in {summary['folder']}"
               + (f" ({summary['skipped']} skipped: refused or withheld by the content policy)"
                  if summary["skipped"] else ""))
    typer.echo(f"rate them with: conjure prefer vote {name}   (or in the studio's Rate panel)")


@prefer_app.command("vote")
def prefer_vote(
    name: Annotated[str, typer.Argument(help="The study to rate.")],
    rater: Annotated[Optional[str], typer.Option(help="Your name as a rater (default: your login name).")] = None,
    side_by_side: Annotated[Optional[Path], typer.Option(
        "--side-by-side", help="Also write each pair as one PNG here (keep it open in an image viewer).")] = None,
) -> None:
    """Rate pairs one after another: 1 = left better, 2 = right better, t = tie, s = skip, q = quit.

    Which contestant made which image stays hidden; every answer is stored as soon as it is given."""
    from conjure.evaluation.preference import AlreadyRated, side_by_side as write_pair
    store = _store()
    _study(store, name)
    rater = rater or _login_name()
    if len(rater) > 64:
        _fail("--rater must have at most 64 characters")
    if side_by_side and not side_by_side.parent.is_dir():
        _fail(f"--side-by-side: the folder {side_by_side.parent} does not exist")
    skipped: list[int] = []
    done = 0
    while True:
        pair = store.next_pair(name, rater, skip=skipped)
        if pair is None:
            typer.echo(f"no pairs left for {rater} in '{name}' ({done} rated now"
                       + (f", {len(skipped)} skipped" if skipped else "") + f"). Scores: conjure prefer scores {name}")
            return
        typer.echo(f"\nprompt: {pair.prompt}\n  1 (left):  {pair.left}\n  2 (right): {pair.right}")
        if side_by_side:
            typer.echo(f"  side by side: {write_pair(pair.left, pair.right, side_by_side)}")
        answer = ""
        while answer not in ("1", "2", "t", "s", "q"):
            try:
                answer = typer.prompt("better? [1/2/t(ie)/s(kip)/q(uit)]", default="", show_default=False,
                                      prompt_suffix=" ").strip().lower()[:1]
            except typer.Abort:   # end of input or Ctrl-C: every vote so far is stored already
                answer = "q"
        if answer == "q":
            typer.echo(f"{done} rated now; scores: conjure prefer scores {name}")
            return
        if answer == "s":
            skipped.append(pair.id)
            continue
        try:
            store.vote(name, pair.id, KEYS[answer], rater)
            done += 1
        except AlreadyRated:   # the same rater in another window was faster: their vote stands
            typer.echo(f"  {rater} has rated this pair already (elsewhere); the first vote stands")


@prefer_app.command("scores")
def prefer_scores(
    name: Annotated[str, typer.Argument(help="The study to score.")],
    boot: Annotated[int, typer.Option(help="Bootstrap rounds for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Bradley-Terry scores (log scale and Elo scale) with 95% bootstrap intervals, best first."""
    store = _store()
    _study(store, name)
    if not 1 <= boot <= 100_000:
        _fail(f"--boot must be between 1 and 100000, got {boot}")
    try:
        result = store.scores(name, n_boot=boot, seed=seed)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    typer.echo(f"study '{name}': {result.n_votes} votes on {result.n_pairs} pairs; "
               f"95% intervals from {result.n_boot} bootstrap rounds over votes")
    width = max(len(c.label) for c in result.contestants)
    typer.echo(f"{'contestant':<{width}}  {'BT score':>8}  {'95% CI':>17}  {'Elo':>6}  "
               f"{'W':>4} {'L':>4} {'T':>4}  {'n':>5}")
    for c in result.contestants:
        typer.echo(f"{c.label:<{width}}  {c.score:>8.3f}  [{c.ci_low:>6.3f}, {c.ci_high:>6.3f}]  {c.elo:>6.0f}  "
                   f"{c.wins:>4.0f} {c.losses:>4.0f} {c.ties:>4.0f}  {c.n:>5}")


@prefer_app.command("list")
def prefer_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every study with its contestants, pairs and votes."""
    rows = _store().summaries()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no studies yet: create one with `conjure prefer new NAME --a JSON --b JSON`")
    for r in rows:
        typer.echo(f"{r['name']}: {r['pairs']} pairs, {r['votes']} votes; {' vs '.join(r['contestants'])}")
