"""The A1111-compatible PNG `parameters` text chunk, written and read back."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

# conjure sampler name -> the name A1111-style tools show
SAMPLER_LABELS = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp_2m": "DPM++ 2M", "euler": "Euler",
                  "euler_a": "Euler a", "heun": "Heun"}


def parameters_text(prompt: str, negative: str, steps: int, sampler: str, guidance: float, seed: int,
                    size: int, model: str, model_hash: str, extra: dict | None = None) -> str:
    """The three-line A1111 format: prompt, 'Negative prompt: ...', then 'Key: value, ...'."""
    fields = {"Steps": steps, "Sampler": SAMPLER_LABELS.get(sampler, sampler), "CFG scale": guidance,
              "Seed": seed, "Size": f"{size}x{size}", "Model hash": model_hash, "Model": model}
    fields.update(extra or {})
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict:
    """Read a `parameters` chunk back into {'prompt', 'negative_prompt', <fields>}."""
    lines = text.split("\n")
    neg = next((i for i, ln in enumerate(lines) if ln.startswith("Negative prompt: ")), None)
    # As A1111 reads it: the prompt is everything before the negative prompt (or the settings line).
    end = neg if neg is not None else max(len(lines) - 1, 1)
    out = {"prompt": "\n".join(lines[:end]), "negative_prompt": ""}
    if neg is not None:
        out["negative_prompt"] = "\n".join(lines[neg:-1])[len("Negative prompt: "):]
    settings = lines[-1] if len(lines) > 1 else ""
    for m in re.finditer(r"\s*([\w ]+): ([^,]+)", settings):
        out[m.group(1).strip()] = m.group(2).strip()
    return out


def save_png(image: Image.Image, path: Path, parameters: str) -> Path:
    """Write a PNG with the parameters chunk, atomically (a temporary name, then rename)."""
    path = Path(path)
    info = PngInfo()
    info.add_text("parameters", parameters)
    tmp = path.with_name(path.name + ".part")
    image.save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)
    return path
