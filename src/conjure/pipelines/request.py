"""The generation request every entry point (CLI, API, worker) builds, and its validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from conjure.diffusion.samplers import DEFAULT_SAMPLER, SAMPLERS

MAX_PROMPT_CHARS = 1000
MAX_PROMPT_TOKENS = 77       # longer prompts are refused, not silently cut
MAX_N = 16
MAX_STEPS = 1000
MAX_GUIDANCE = 30.0
MAX_SEED = 2**32 - 1
MAX_INIT_PIXELS = 4096 * 4096


class RequestError(ValueError):
    """A request the user must change; the message says what to change."""


@dataclass
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    n: int = 1
    seed: int = 0                 # image i uses seed + i
    steps: int | None = None      # None = the model's default
    guidance: float | None = None
    scheduler: str | None = None
    size: int | None = None
    init_image: Image.Image | None = field(default=None, repr=False)   # image-to-image / inpainting
    strength: float = 0.75        # share of the schedule re-run on the init image (1 = ignore it)
    mask: Image.Image | None = field(default=None, repr=False)         # white = repaint

    def params(self) -> dict:
        """JSON-able parameters (images left out) for metadata and records."""
        d = {k: v for k, v in asdict(self).items() if k not in ("init_image", "mask")}
        d["task"] = self.task
        return d

    @property
    def task(self) -> str:
        if self.mask is not None:
            return "inpaint"
        return "image_to_image" if self.init_image is not None else "text_to_image"


def check_request(req: GenerationRequest, sizes: list[int], token_count=None) -> None:
    """Raise RequestError with what to change; fill None fields is the caller's job (see resolve)."""
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise RequestError("the prompt is empty: describe the image you want, e.g. 'a red apple'")
    for name, text in (("prompt", req.prompt), ("negative prompt", req.negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            raise RequestError(f"the {name} has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
        if token_count is not None and text and token_count(text) > MAX_PROMPT_TOKENS:
            raise RequestError(f"the {name} has {token_count(text)} tokens; the limit is {MAX_PROMPT_TOKENS}: "
                               "shorten it")
    if req.scheduler not in SAMPLERS:
        raise RequestError(f"unknown scheduler '{req.scheduler}'; choose from: {', '.join(SAMPLERS)}")
    if req.size not in sizes:
        raise RequestError(f"size {req.size} is not supported by this model; choose from: "
                           f"{', '.join(map(str, sizes))}")
    if not 1 <= req.n <= MAX_N:
        raise RequestError(f"n must be between 1 and {MAX_N}, got {req.n}")
    if not 1 <= req.steps <= MAX_STEPS:
        raise RequestError(f"steps must be between 1 and {MAX_STEPS}, got {req.steps}")
    if not 0.0 <= req.guidance <= MAX_GUIDANCE:
        raise RequestError(f"guidance must be between 0 and {MAX_GUIDANCE}, got {req.guidance}")
    if not 0 <= req.seed <= MAX_SEED - req.n:
        raise RequestError(f"seed must be between 0 and {MAX_SEED - req.n}, got {req.seed}")
    if req.init_image is None and req.mask is not None:
        raise RequestError("a mask needs an init image to repaint (--init-image)")
    if req.init_image is not None:
        if not 0.0 < req.strength <= 1.0:
            raise RequestError(f"strength must be in (0, 1], got {req.strength}")
        if int(round(req.steps * req.strength)) < 1:
            raise RequestError(f"strength {req.strength} with {req.steps} steps repaints nothing: "
                               "raise --strength or --steps")
        w, h = req.init_image.size
        if w * h > MAX_INIT_PIXELS:
            raise RequestError(f"the init image is {w}x{h}; at most {MAX_INIT_PIXELS} pixels are accepted")
    if req.mask is not None and req.mask.size != req.init_image.size:
        raise RequestError(f"the mask is {req.mask.size[0]}x{req.mask.size[1]} but the init image is "
                           f"{req.init_image.size[0]}x{req.init_image.size[1]}: they must be the same size")


def mask_array(mask: Image.Image, size: int) -> np.ndarray:
    """White (repaint) = 1, black (keep) = 0, as (size, size) float32."""
    m = np.asarray(mask.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return (m > 0.5).astype(np.float32)


__all__ = ["DEFAULT_SAMPLER", "GenerationRequest", "RequestError", "check_request", "mask_array"]
