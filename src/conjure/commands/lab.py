"""`conjure lab`: train the six model families on Fashion-MNIST with one loop, evaluate each run with the
same measurements, and compare them in one report (benchmarks/lab/README.md, benchmarks/results/lab.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

lab_app = typer.Typer(help="Model-family lab: GAN, VAE, DDPM, latent diffusion, flow matching, autoregressive.",
                      no_args_is_help=True)
RUNS = Path("runs/lab")


def _fail(message: str) -> None:
    from conjure.cli import fail      # the CLI's one error exit (status 2); imported late: cli imports this module
    fail(message)


@lab_app.command("train")
def lab_train(
    family: Annotated[str, typer.Argument(help="gan, gan-unstable, vae, ddpm, ldm, flow or ar.")],
    images: Annotated[int, typer.Option(help="Training images (the prior's, for two-stage families).")] = 300_000,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 0,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/lab/FAMILY-seedS).")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (resumably) after this many minutes.")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Model size preset ('test' = tiny).")] = None,
) -> None:
    """Train one family (resumes from the run folder's checkpoint; a larger --images extends a finished run)."""
    from conjure.lab.families import FAMILIES
    from conjure.lab.train import train_family
    if family not in FAMILIES:
        _fail(f"unknown family '{family}'; choose from: {', '.join(FAMILIES)}")
    if images < 128:
        _fail("--images must be at least one batch (128)")
    run_dir = run_dir or RUNS / f"{family}-seed{seed}"
    out = train_family(family, run_dir, images=images, seed=seed, preset=preset, max_minutes=max_minutes)
    typer.echo(str(out) if out else f"stopped early; run the same command again to resume {run_dir}")


@lab_app.command("evaluate")
def lab_evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (it holds model/).")],
    n: Annotated[int, typer.Option(help="Samples, n / 10 per class prompt.")] = 2000,
    steps: Annotated[Optional[int], typer.Option(help="Sampling steps (default: the family's).")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="ddim / ddpm (diffusion), euler / heun (flow).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Sample a trained run and write its metrics.json and samples.png."""
    from conjure.lab.evaluate import evaluate_run
    if not (run_dir / "model" / "config.json").is_file():
        _fail(f"{run_dir} holds no finished model; train it first with: conjure lab train FAMILY")
    if n < 10 or n % 10:
        _fail("--n must be a positive multiple of 10 (the same number of samples per class)")
    try:
        r = evaluate_run(run_dir / "model", n=n, seed=seed, steps=steps, sampler=sampler)
    except ValueError as e:
        _fail(str(e))
    suffix = f".{r['tag']}" if r["tag"] else ""
    typer.echo(f"{run_dir.name}: fid_conjure {r['fid_conjure']:.3g} (floor {r['fid_conjure_floor']:.3g}), "
               f"class accuracy {r['class_accuracy']:.3f}, {r['sample_ms']:.3g} ms per image; "
               f"written to {run_dir / f'metrics{suffix}.json'}")


@lab_app.command("demos")
def lab_demos(
    what: Annotated[str, typer.Argument(help="vae, steps (or steps-ddpm, steps-ldm, steps-flow), denoise or collapse.")],
    runs: Annotated[Path, typer.Option(help="Folder of the lab's runs.")] = RUNS,
    n: Annotated[int, typer.Option(help="Samples per point (steps, collapse).")] = 500,
) -> None:
    """The demonstrations: VAE interpolation / arithmetic / anomaly AUROC, quality against steps for diffusion
    and flow matching, and mode collapse of the deliberately unstable GAN against the stable one."""
    from conjure.lab.demos import run_demo
    try:
        out = run_demo(what, runs, n)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(str(out))


@lab_app.command("compare")
def lab_compare(
    runs: Annotated[Path, typer.Option(help="Folder of the lab's runs.")] = RUNS,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("benchmarks/lab"),
    results: Annotated[Path, typer.Option(help="JSON results file.")] = Path("benchmarks/results/lab.json"),
) -> None:
    """Gather every evaluated run into benchmarks/results/lab.json and the report benchmarks/lab/README.md."""
    from conjure.lab.report import write_report
    try:
        path = write_report(runs, out, results)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
