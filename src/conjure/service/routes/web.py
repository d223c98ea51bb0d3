"""The studio page: static HTML, CSS and JS from `service/web/` (no build step, nothing fetched from
elsewhere), plus the few server facts the page cannot read from the API (default model, choices, limits)."""

from __future__ import annotations

import json
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import FileResponse

from conjure.diffusion.samplers import DEFAULT_SAMPLER, SAMPLERS
from conjure.pipelines.registry import list_models
from conjure.pipelines.request import MAX_GUIDANCE, MAX_N, MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS
from conjure.service.core import ServiceError
from conjure.service.deps import Context
from conjure.service.schemas import MAX_SIZE

router = APIRouter(include_in_schema=False)
WEB = files("conjure.service") / "web"
ASSETS = {"studio.css": "text/css", "studio.js": "text/javascript", "cards.js": "text/javascript",
          "favicon.svg": "image/svg+xml"}
NO_STORE = {"Cache-Control": "no-cache"}
# The page loads nothing from elsewhere, and the browser is told so (previews arrive as data: URIs).
CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


@router.get("/")
def studio() -> FileResponse:
    return FileResponse(str(WEB / "index.html"), media_type="text/html",
                        headers={**NO_STORE, "Content-Security-Policy": CSP})


@router.get("/studio/config.json")
def studio_config(ctx: Context) -> dict:
    """Defaults and limits for the form (the API's schemas enforce the same limits)."""
    return {"default_model": ctx.settings.default_model, "require_auth": ctx.settings.require_auth,
            "model_defaults": _model_defaults(ctx),
            "schedulers": list(SAMPLERS), "default_scheduler": DEFAULT_SAMPLER,
            "limits": {"prompt_chars": MAX_PROMPT_CHARS, "n": MAX_N, "steps": MAX_STEPS,
                       "guidance": MAX_GUIDANCE, "seed": MAX_SEED - MAX_N, "size": MAX_SIZE}}


def _model_defaults(ctx) -> dict:
    """What each built-in-format model uses when a field is left empty (shown as the form's placeholders)."""
    out = {}
    for m in list_models(ctx.settings):
        if m.kind == "conjure" and (m.path / "conjure.json").is_file():
            meta = json.loads((m.path / "conjure.json").read_text())
            out[m.name] = {k: meta.get(f"default_{k}") for k in ("size", "steps", "guidance", "scheduler")}
    return out


@router.get("/studio/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:   # a fixed list: no path from the request ever reaches the file system
        raise ServiceError(404, f"no studio file '{name}'")
    return FileResponse(str(WEB / name), media_type=ASSETS[name], headers=NO_STORE)
