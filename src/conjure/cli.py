"""conjure's command line: one Typer app. Bad input exits with status 2 and a message that says what to change."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="conjure: self-hosted generative media.", no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="List and add models.", no_args_is_help=True)
data_app = typer.Typer(help="Build and inspect the dataset cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
audit_app = typer.Typer(help="Check and maintain the tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
keys_app = typer.Typer(help="Create, list and revoke API keys (admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
safety_app = typer.Typer(help="Screen prompts under the content policy.", no_args_is_help=True)
app.add_typer(safety_app, name="safety")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_image(path: Path, what: str):
    """Open a user's image fully (so corrupt files fail here), refusing decompression bombs."""
    from PIL import Image

    from conjure.pipelines.request import MAX_INIT_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_INIT_PIXELS
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        fail(f"the {what} '{path}' does not exist")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        fail(f"the {what} '{path}' is too large: at most {MAX_INIT_PIXELS} pixels are accepted")
    except Exception as e:   # PIL raises several types for unreadable data
        fail(f"cannot read the {what} '{path}' as an image ({type(e).__name__}: {e}); give a PNG or JPEG file")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "image"


def _free_path(out: Path, stem: str) -> Path:
    path = out / f"{stem}.png"
    i = 1
    while path.exists():
        path = out / f"{stem}-{i}.png"
        i += 1
    return path


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw, e.g. 'a red apple'.")],
    n: Annotated[int, typer.Option("-n", "--n", help="Images for this prompt (1-16).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    steps: Annotated[Optional[int], typer.Option(help="Sampling steps (model default if unset).")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale.")] = None,
    negative: Annotated[str, typer.Option(help="Negative prompt: what to steer away from.")] = "",
    scheduler: Annotated[Optional[str], typer.Option(help="ddpm, ddim, dpmpp_2m, euler, euler_a, heun.")] = None,
    size: Annotated[Optional[int], typer.Option(help="Output size in pixels (model's choices).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name (see `conjure models list`).")] = None,
    init_image: Annotated[Optional[Path], typer.Option(help="Start from this image (image-to-image).")] = None,
    strength: Annotated[float, typer.Option(help="How much of the init image to repaint, 0-1.")] = 0.75,
    mask: Annotated[Optional[Path], typer.Option(help="Inpainting mask: white = repaint.")] = None,
    precision: Annotated[str, typer.Option(help="fp32 (traced graph, exact) or bf16 (autocast).")] = "fp32",
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("out"),
) -> None:
    """Generate images from a prompt: each PNG is screened, watermarked, signed (C2PA), carries its
    parameters and has an audit entry. A prompt the content policy refuses exits with status 3."""
    from tqdm import tqdm

    from conjure.config import get_settings
    from conjure.pipelines import load_pipeline
    from conjure.pipelines.product import Refused
    from conjure.pipelines.request import GenerationRequest, RequestError

    # 1. read inputs and check everything before anything is written
    init = _load_image(init_image, "init image") if init_image else None
    mask_im = _load_image(mask, "mask") if mask else None
    if precision not in ("bf16", "fp32"):
        fail("--precision must be bf16 or fp32")
    req = GenerationRequest(prompt, negative_prompt=negative, n=n, seed=seed, steps=steps, guidance=guidance,
                            scheduler=scheduler, size=size, init_image=init, strength=strength, mask=mask_im)
    try:
        pipe = load_pipeline(model or get_settings().default_model, precision=precision)
        req = pipe.check(req)
    except ValueError as e:
        fail(str(e))
    # 2. generate with a progress bar (the pipeline screens, watermarks, signs and audits)
    bar = tqdm(total=req.steps, desc="sampling", unit="step", file=sys.stderr, leave=False)
    try:
        result = pipe(req, progress=lambda i, total: bar.update(i - bar.n))
    except Refused as e:
        bar.close()
        fail(str(e), code=3)
    except RequestError as e:   # checks that need the sampler's timesteps (strength too low for the steps)
        bar.close()
        fail(str(e))
    bar.close()
    # 3. write the stamped PNGs; say what the image screening did
    out.mkdir(parents=True, exist_ok=True)
    for o in result.outputs:
        v = o.verdict
        if v["action"] != "allow":
            typer.echo(f"image seed {o.seed}: {v['action']} ({v['check']}: {v['reason']})", err=True)
        if o.withheld:
            continue
        path = _free_path(out, f"{_slug(req.prompt)}-{o.seed}")
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(o.png)
        tmp.replace(path)   # atomic: a killed run never leaves half a PNG under the final name
        typer.echo(str(path))


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show built-in and added models."""
    from conjure.pipelines.registry import list_models
    entries = list_models()
    if as_json:
        typer.echo(json.dumps([{"name": m.name, "path": str(m.path), "kind": m.kind, "builtin": m.builtin}
                               for m in entries], indent=1))
        return
    if not entries:
        typer.echo("no models: the built-in models live under models/; add one with: conjure models add PATH")
    for m in entries:
        typer.echo(f"{m.name:24s} {'built-in' if m.builtin else 'added':9s} {m.kind:28s} {m.path}")


@models_app.command("add")
def models_add(path: Path, name: Annotated[Optional[str], typer.Option(help="Name to register.")] = None) -> None:
    """Register a local diffusers pipeline folder (for example a Stable Diffusion checkout)."""
    from conjure.pipelines.registry import add_model
    try:
        entry = add_model(path, name)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"added {entry.name} ({entry.kind}) -> {entry.path}")


@data_app.command("build")
def data_build(
    source: Annotated[Optional[list[str]], typer.Option(help="Source(s) to build; default all.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Build at most this many items per source.")] = None,
) -> None:
    """Build the local dataset cache from the installed registry packages."""
    from conjure.data import SOURCES, MissingSource, build_source
    names = source or list(SOURCES)
    if limit is not None and limit < 1:
        fail("--limit must be at least 1")
    unknown = [s for s in names if s not in SOURCES]
    if unknown:
        fail(f"unknown source(s): {', '.join(unknown)}; choose from: {', '.join(SOURCES)}")
    for s in names:
        try:
            path = build_source(s, limit=limit)
        except MissingSource as e:
            fail(str(e))
        meta = json.loads((path / "meta.json").read_text())
        typer.echo(f"{s}: {meta['count']} items {meta['splits']} -> {path}")


@data_app.command("show")
def data_show(
    source: Annotated[str, typer.Option(help="Source to show.")] = "noto",
    split: Annotated[str, typer.Option(help="train, validation or test.")] = "train",
    count: Annotated[int, typer.Option("-n", help="Number of items.")] = 32,
    seed: Annotated[int, typer.Option(help="Which items (random but fixed by the seed).")] = 0,
    out: Annotated[Path, typer.Option("-o", "--out")] = Path("contact-sheet.png"),
) -> None:
    """Write a captioned contact sheet PNG of a source."""
    import numpy as np

    from conjure.data import load_source
    from conjure.data.build import SPLITS
    from conjure.data.show import save_contact_sheet
    if split not in SPLITS:
        fail(f"unknown split '{split}'; choose from: {', '.join(SPLITS)}")
    try:
        d = load_source(source, split)
    except FileNotFoundError as e:
        fail(str(e))
    idx = np.random.default_rng(seed).choice(len(d), min(count, len(d)), replace=False)
    save_contact_sheet(out, [d.images[i] for i in idx], [d.records[i]["captions"][0] for i in idx])
    typer.echo(str(out))


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="A recipe YAML under recipes/.")],
    dry_run: Annotated[bool, typer.Option(help="Print the resolved config and exit.")] = False,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run directory.")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop (with a checkpoint) after this long.")] = None,
    images: Annotated[Optional[int], typer.Option(help="Override the recipe's image budget.")] = None,
    export: Annotated[Optional[Path], typer.Option(help="Copy the trained model folder here at the end.")] = None,
    init_from: Annotated[Optional[Path], typer.Option(help="Warm-start a new run from this model folder.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="Override the recipe's mixed precision: bf16 or no (fp32; faster on CPUs without native bf16).")] = None,
) -> None:
    """Train a model from a recipe, in a new run directory (or resume one)."""
    import dataclasses

    from conjure.config import get_settings
    from conjure.training.recipe import load_any_recipe, run_recipe
    try:
        rec = load_any_recipe(recipe, images=images)
    except ValueError as e:
        fail(str(e))
    if precision is not None:
        if precision not in ("bf16", "no"):
            fail(f"--precision must be bf16 or no, not {precision!r}")
        if not hasattr(rec, "mixed_precision"):
            fail(f"{recipe} has no mixed-precision setting to override")
        rec = dataclasses.replace(rec, mixed_precision=precision)
    if getattr(rec, "mixed_precision", None) == "bf16":
        import torch

        from conjure.training.cpu import native_bf16
        if not torch.cuda.is_available() and native_bf16() is False:
            typer.echo("note: this CPU has no native bf16 (AMX or AVX-512 BF16), so bf16 autocast is emulated and "
                       "runs several times slower than fp32 here; add --precision no", err=True)
    if dry_run:
        typer.echo(json.dumps(dataclasses.asdict(rec), indent=1, default=str))
        return
    settings = get_settings()
    if init_from is not None and not (init_from / "unet").is_dir():
        fail(f"--init-from {init_from} is not a model folder (no unet/ inside)")
    try:
        result = run_recipe(rec, settings, resume=resume, max_minutes=max_minutes, export=export,
                            init_from=init_from)
    except ValueError as e:
        fail(str(e))
    typer.echo(str(result))


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="A built-in or added model name, or 'bias' for the bias audit.")],
    suite: Annotated[str, typer.Option(help="A prompt suite under conjure/evaluation/suites/.")] = "heldout",
    n: Annotated[int, typer.Option(help="Images to generate (prompts repeat with new seeds).")] = 200,
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default: evaluations/MODEL-SUITE-N).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampling steps (default: the model's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    bias_model: Annotated[str, typer.Option("--model", help="With MODEL = bias: the model to audit.")] = "conjure-tiny",
    n_per_prompt: Annotated[int, typer.Option(help="With MODEL = bias: images per prompt.")] = 16,
    threads: Annotated[int, typer.Option(help="CPU threads (1 suits a shared, loaded machine).")] = 1,
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale (default: the "
                                                           "model's).")] = None,
) -> None:
    """Generate a prompt suite's images and write a report folder (metrics.json, report.md, samples.png):
    fid_conjure / kid_conjure / is_conjure / precision-recall beside the real-vs-real floor, class accuracy and
    CLIP R@1. `conjure evaluate bias` runs the bias audit instead (bias.json, bias.md, bias.png)."""
    from conjure.evaluation.report import evaluate as run_evaluation
    if model == "bias":
        from conjure.evaluation.bias import audit
        if guidance is not None:
            fail("--guidance applies to suite evaluations; the bias audit samples at the model's default guidance")
        out = out or Path("evaluations") / f"bias-{bias_model}-k{n_per_prompt}"
        try:
            audit(bias_model, n_per_prompt, out, steps=steps, seed=seed)
        except (ValueError, FileNotFoundError) as e:
            fail(str(e))
        typer.echo(str(out / "bias.md"))
        return
    if n < 2 or threads < 1:
        fail("--n must be at least 2 and --threads at least 1")
    out = out or Path("evaluations") / f"{model}-{suite}-{n}"
    try:
        run_evaluation(model, suite, n, out, steps=steps, seed=seed, threads=threads, guidance=guidance)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(str(out / "report.md"))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; beyond loopback needs CONJURE_REQUIRE_AUTH=true.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker child processes to start (0 = run `conjure worker` "
                                              "elsewhere).")] = 1,
) -> None:
    """Run the generation service: HTTP API, job store, queue, and worker child processes."""
    from conjure.config import get_settings
    from conjure.service.processes import WorkerProcesses, check_bind
    if workers < 0 or not 0 < port < 65536:
        fail("--workers must be 0 or more and --port between 1 and 65535")
    settings = get_settings()
    try:
        check_bind(settings, host)
    except ValueError as e:
        fail(str(e))
    procs = WorkerProcesses(workers)
    procs.start()                     # the workers import and warm their model while the server imports
    try:
        from conjure.service.app import serve as run_server
        run_server(settings, host, port, workers, procs=procs)
    except ValueError as e:
        fail(str(e))
    finally:
        procs.stop()


@app.command()
def worker(
    warm: Annotated[Optional[list[str]], typer.Option(help="Models to load before the first job "
                                                           "(default: the default model).")] = None,
) -> None:
    """Run one more worker: it takes jobs from the service's queue until SIGTERM."""
    from conjure.config import get_settings
    from conjure.service.app import run_worker
    settings = get_settings()
    try:
        run_worker(settings, warm if warm is not None else [settings.default_model])
    except ValueError as e:
        fail(str(e))


def _verify_text(r) -> list[str]:
    c, w = r.c2pa, r.watermark
    lines = [f"file       {r.path}  (sha256 {r.sha256[:16]}...)"]
    why = "; ".join(c.reasons)
    lines.append(f"c2pa       {c.state}" + (f": {why}" if why else "")
                 + (f"\n           manifest {c.manifest_id}, signer {c.signer}" if c.manifest_id else ""))
    lines.append(f"watermark  found: id {w.watermark_id} ({w.watermark_id:08x}), score {w.score:.2f} "
                 f"(threshold {w.threshold:.2f})" if w.found else
                 f"watermark  not found (score {w.score:.2f}, threshold {w.threshold:.2f})")
    if r.image_error:
        lines.append(f"image      {r.image_error}")
    if not r.audit:
        lines.append("audit      no matching entry in this store")
    for e in r.audit:
        prompt = "[redacted]" if e["redacted"] else repr(e["prompt"])
        lines.append(f"audit      entry {e['seq']} (matched by {r.audit_match}): job {e['job_id']}, {e['created_at']}, "
                     f"model {e['model']} ({e['model_hash']}), seed {e['seed']}, prompt {prompt}")
    return lines


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="An image to check (PNG, JPEG, WebP).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a file's provenance: C2PA manifest, invisible watermark and audit log entry.

    Exit codes: 0 = provenance found and intact (C2PA trusted or valid, or the watermark found when the
    manifest is gone); 1 = the C2PA manifest is invalid (the file was edited after signing);
    3 = no provenance (no manifest, no watermark); 2 = bad input.
    """
    from conjure.provenance import verify_file
    try:
        report = verify_file(file)
    except ValueError as e:
        fail(str(e))
    typer.echo(json.dumps(report.to_dict(), indent=1) if as_json else "\n".join(_verify_text(report)))
    if report.c2pa.state == "invalid":
        raise typer.Exit(1)
    if report.c2pa.state == "absent" and not report.watermark.found:
        raise typer.Exit(3)


@audit_app.command("verify")
def audit_verify(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Check the whole audit chain; name every edited, deleted, reordered or truncated entry.

    Exit codes: 0 = the chain is intact; 1 = it is not (each problem is printed); 2 = bad input.
    """
    from conjure.provenance import audit
    report = audit.verify()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    elif report.ok:
        typer.echo(f"ok: {report.entries} entries, head entry {report.head_seq} hash {report.head_hash}")
    else:
        for p in report.problems:
            where = f"entry {p['seq']}" if p["seq"] is not None else "head"
            typer.echo(f"{where}: {p['kind']}: {p['detail']}")
        typer.echo(f"FAILED: {len(report.problems)} problem(s) in {report.entries} entries")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("redact")
def audit_redact(job_id: Annotated[str, typer.Argument(help="The job whose prompts to blank.")]) -> None:
    """Blank the prompts of a job's audit entries; the chain stays verifiable."""
    from conjure.provenance import audit
    n = audit.redact(job_id)
    if n == 0:
        fail(f"no audit entry has job id '{job_id}'")
    typer.echo(f"redacted {n} entr{'y' if n == 1 else 'ies'} of job {job_id}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="The user the key belongs to; their jobs are scoped to this name.")],
    role: Annotated[str, typer.Option(help="admin (sees every user's jobs) or user.")] = "user",
    rate: Annotated[Optional[int], typer.Option(help="Requests a minute (0 = unlimited; default: the "
                                                     "rate_limit_per_min setting).")] = None,
    quota: Annotated[Optional[int], typer.Option(help="Images a UTC day (0 = unlimited; default: the "
                                                      "daily_quota setting).")] = None,
) -> None:
    """Create an API key and print it once: only its SHA-256 hash is stored."""
    from conjure.config import get_settings
    from conjure.db import session_factory
    from conjure.service.auth import create_key
    settings = get_settings()
    try:
        with session_factory(settings.db_url)() as s, s.begin():
            plain, row = create_key(s, name, role, settings.rate_limit_per_min if rate is None else rate,
                                    settings.daily_quota if quota is None else quota)
    except ValueError as e:
        fail(str(e))
    typer.echo(plain)
    typer.echo(f"created key {row.prefix}... for {row.owner} ({row.role}, {row.rate_limit_per_min}/min, "
               f"{row.daily_quota} images/day): store it now, it cannot be shown again", err=True)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every key (live and revoked) by prefix, user, role and limits; never the key itself."""
    import time
    from conjure.config import get_settings
    from conjure.db import session_factory
    from conjure.service.auth import list_keys
    with session_factory(get_settings().db_url)() as s:
        rows = [{"id": k.id, "prefix": k.prefix, "user": k.owner, "role": k.role, "rate_limit_per_min":
                 k.rate_limit_per_min, "daily_quota": k.daily_quota, "created_at": k.created_at,
                 "revoked_at": k.revoked_at} for k in list_keys(s)]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no keys: create one with: conjure keys create NAME --role admin")
    def day(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))
    for k in rows:
        state = f"revoked {day(k['revoked_at'])}" if k["revoked_at"] else "live"
        typer.echo(f"{k['prefix']}...  {k['user']:20s} {k['role']:5s} {k['rate_limit_per_min']:5d}/min "
                   f"{k['daily_quota']:7d}/day  created {day(k['created_at'])}  {state}")


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="A user name (revokes all their keys), or one key's prefix or id.")],
) -> None:
    """Revoke keys at once: requests that carry them get 401 from then on."""
    from conjure.config import get_settings
    from conjure.db import session_factory
    from conjure.service.auth import revoke
    try:
        with session_factory(get_settings().db_url)() as s, s.begin():
            rows = revoke(s, name)
            done = [(k.prefix, k.owner) for k in rows]
    except ValueError as e:
        fail(str(e))
    for prefix, owner in done:
        typer.echo(f"revoked {prefix}... of {owner}")


@safety_app.command("screen")
def safety_screen(
    prompt: Annotated[str, typer.Argument(help="The prompt to screen.")],
    negative: Annotated[str, typer.Option(help="Negative prompt (the verdict shows it with the safety "
                                               "negative prompt appended).")] = "",
    policy: Annotated[Optional[Path], typer.Option(help="Policy YAML file (default: the policy setting, "
                                                        "CONJURE_POLICY, else the packaged policy).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Screen a prompt as generation would, and print the verdict: exit 0 when the prompt is allowed
    (flagged or blurred included), 3 when the policy refuses it."""
    from conjure.safety import load_policy, screen_prompt
    try:
        verdict = screen_prompt(prompt, negative_prompt=negative, policy=load_policy(policy))
    except ValueError as e:
        fail(str(e))
    if as_json:
        typer.echo(verdict.to_json())
    else:
        what = (f"{verdict.category} (score {verdict.score:.2f}, {verdict.check}): {verdict.reason}"
                if verdict.category else verdict.reason)
        typer.echo(f"{'allowed' if verdict.allowed else 'refused'}: {verdict.action}, {what} "
                   f"[policy {verdict.policy_version}]")
    if not verdict.allowed:
        raise typer.Exit(3)


@app.command()
def speak(
    text: Annotated[Optional[str], typer.Argument(help="What to say; '-' reads it from stdin.")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output file.")] = Path("speech.wav"),
    voice: Annotated[Optional[str], typer.Option(help="A registered voice (default: joe).")] = None,
    speed: Annotated[float, typer.Option(help="Speaking rate, 0.25-4.0.")] = 1.0,
    fmt: Annotated[Optional[str], typer.Option("--format", help="wav, mp3, opus, aac (M4A), flac or pcm "
                                                                "(default: from the file name, else wav).")] = None,
    list_voices: Annotated[bool, typer.Option("--list-voices", help="List the registered voices and exit.")] = False,
) -> None:
    """Speak text with a registered voice: the text is screened, the file signed (C2PA for wav, mp3, flac,
    aac) and audited. A text the content policy refuses exits with status 3."""
    from conjure.pipelines.speech import FORMATS, Refused, SpeechPipeline
    from conjure.pipelines.voices import list_voices as registered
    if list_voices:
        for v in registered():
            typer.echo(f"{v.name:10s} {v.engine:10s} {v.language:6s} {v.licence}\n{'':10s} {v.provenance}")
        return
    if text is None:
        fail("give the text to say (or '-' to read it from stdin)")
    if text == "-":
        text = sys.stdin.read()
    fmt = fmt or (out.suffix.lstrip(".").lower() if out.suffix.lstrip(".").lower() in FORMATS else "wav")
    pipe = SpeechPipeline()
    try:
        speech = pipe(text, voice=voice, speed=speed, fmt=fmt)
    except Refused as e:
        fail(str(e), code=3)
    except ValueError as e:
        fail(str(e))
    finally:
        pipe.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(speech.audio)
    tmp.replace(out)
    typer.echo(str(out))


@app.command()
def transcribe(
    file: Annotated[Path, typer.Argument(help="An audio file (WAV, MP3, FLAC, Opus, M4A, ...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON with word timestamps.")] = False,
) -> None:
    """Transcribe US English speech with pocketsphinx (offline; the model ships inside the wheel)."""
    from conjure.pipelines.transcribe import transcribe as run_transcribe
    try:
        transcript = run_transcribe(file)
    except ValueError as e:
        fail(str(e))
    typer.echo(json.dumps(transcript.to_dict(), indent=1) if as_json else transcript.text)


def _register_command_modules() -> None:
    from conjure.commands import register_all
    register_all(app)


_register_command_modules()


def main() -> None:
    from conjure.config import offline_environment
    offline_environment()
    app()


if __name__ == "__main__":
    main()
