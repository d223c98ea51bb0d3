"""Shared helpers for the provenance tests: synthetic outputs that look like conjure's (a white
background, one saturated shape, dark strokes, a little texture), and records."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from conjure.provenance.record import GenerationRecord


def synthetic_output(seed: int, size: int = 256) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    x0, y0 = rng.integers(10, size // 3, 2)
    x1, y1 = rng.integers(2 * size // 3, size - 10, 2)
    draw.ellipse([int(x0), int(y0), int(x1), int(y1)], fill=colour)
    for _ in range(3):
        pts = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(4)]
        draw.line(pts, fill=(0, 0, 0), width=int(rng.integers(3, 9)))
    arr = np.asarray(im).astype(np.int16)
    shape = arr.min(-1) < 250   # texture inside the drawing only, as the model's outputs have
    arr[shape] += rng.integers(-12, 13, (int(shape.sum()), 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def record(seed: int = 0, prompt: str = "a red apple", **kw) -> GenerationRecord:
    return GenerationRecord(prompt=prompt, model="test-tiny", model_hash="0123abcd", seed=seed,
                            params={"steps": 10, "scheduler": "dpmpp_2m", "guidance": 5.0, "size": 256,
                                    "task": "text_to_image"}, **kw)


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
