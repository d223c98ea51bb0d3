"""`conjure sweep`: the guidance study (one prompt, several guidance scales, the same seeds in every row).

See `conjure.evaluation.sweep` for what it measures and writes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    # click options take one value each: the values written after the first (--guidance 1 2 3) arrive as
    # extra arguments, which sweep reads as further scales
    app.command(context_settings={"allow_extra_args": True})(sweep)


def _fail(message: str, code: int = 2) -> None:
    from conjure.cli import fail
    fail(message, code)


def guidance_values(first: Optional[list[float]], extra: list[str]) -> list[float]:
    """The scales from `--guidance 1 2 3` (or `--guidance 1 --guidance 2`); None = the default list."""
    from conjure.evaluation.sweep import DEFAULT_GUIDANCE
    if extra and not first:
        raise ValueError(f"unexpected arguments {' '.join(extra)}: give one prompt (quote it) and put scales "
                         "after --guidance")
    values = list(first or [])
    for text in extra:
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"'{text}' is not a guidance scale: write the prompt first, then numbers after "
                             "--guidance, e.g. conjure sweep 'red apple' --guidance 1 3 7") from None
    return values or list(DEFAULT_GUIDANCE)


def sweep(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt to study (quote it).")],
    guidance: Annotated[Optional[list[float]], typer.Option(
        help="Guidance scales, one row each: --guidance 1 2 3 5 7 10 15 20 (the default).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds 0..N-1, one column each (the same in every row).")] = 8,
    steps: Annotated[Optional[int], typer.Option(help="Sampling steps (default: the model's).")] = None,
    model: Annotated[Optional[str], typer.Option(help="A built-in or added model name (default: the settings').")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: studies/sweep-PROMPT).")] = None,
) -> None:
    """Guidance study: a grid (rows = guidance, columns = seeds), a plot of CLIP score against diversity
    (mean pairwise conjure-features distance across seeds) as guidance grows, and the numbers as JSON."""
    from conjure.config import get_settings
    from conjure.evaluation.sweep import guidance_sweep
    from conjure.safety import Refused
    try:
        scales = guidance_values(guidance, ctx.args)
    except ValueError as e:
        _fail(str(e))
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "prompt"
    out = out or Path("studies") / f"sweep-{slug}"
    try:
        result = guidance_sweep(model or get_settings().default_model, prompt, scales, seeds, steps, out)
    except Refused as e:
        _fail(str(e), code=3)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    for p in result["points"]:
        typer.echo(f"w={p['guidance']:g}\tclip_score {p['clip_score']:.2f}\tdiversity {p['diversity']:.3f}")
    typer.echo(str(out / "sweep.json"))
