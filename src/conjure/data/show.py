"""Captioned contact sheets: a grid of images with their captions underneath."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def contact_sheet(images: list[np.ndarray] | np.ndarray, captions: list[str], cols: int = 8,
                  tile: int = 96, caption_lines: int = 2) -> Image.Image:
    """Lay images (H, W, 3) uint8 out in a grid, each tile `tile` px wide with its caption below."""
    font = ImageFont.load_default(size=11)
    line_h = 13
    cell_h = tile + caption_lines * line_h + 4
    rows = max(1, -(-len(captions) // cols))
    sheet = Image.new("RGB", (cols * tile, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    width_chars = max(8, tile // 6)
    for i, (img, cap) in enumerate(zip(images, captions)):
        x, y = (i % cols) * tile, (i // cols) * cell_h
        sheet.paste(Image.fromarray(np.asarray(img)).resize((tile - 4, tile - 4), Image.NEAREST), (x + 2, y + 2))
        for j, line in enumerate(textwrap.wrap(cap, width_chars)[:caption_lines]):
            draw.text((x + 3, y + tile + j * line_h), line, fill="black", font=font)
    return sheet


def save_contact_sheet(path: Path, images, captions, cols: int = 8) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(images, captions, cols=cols).save(path)
    return path
