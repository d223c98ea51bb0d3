"""Contact sheets: a grid of tiles with captions underneath."""

from __future__ import annotations

import numpy as np
from PIL import Image

from conjure.data.show import contact_sheet, save_contact_sheet


def _solid(rgb) -> np.ndarray:
    return np.full((64, 64, 3), rgb, np.uint8)


def test_contact_sheet_size_follows_the_grid():
    images = [_solid((255, 0, 0))] * 10
    sheet = contact_sheet(images, [f"item {i}" for i in range(10)], cols=4, tile=96, caption_lines=2)
    cell_h = 96 + 2 * 13 + 4
    assert sheet.size == (4 * 96, 3 * cell_h)   # 10 items in 4 columns -> 3 rows
    assert sheet.mode == "RGB"


def test_contact_sheet_places_images_and_captions():
    sheet = np.asarray(contact_sheet([_solid((255, 0, 0)), _solid((0, 0, 255))], ["red", "blue"], cols=2, tile=96))
    assert tuple(sheet[48, 48]) == (255, 0, 0)          # tile 0, centre
    assert tuple(sheet[48, 96 + 48]) == (0, 0, 255)     # tile 1, centre
    caption_band = sheet[96:96 + 26, :96]
    assert (caption_band < 128).any()                   # the caption is drawn in black under the tile
    assert (sheet[96:, 96 + 60:] == 255).all()          # short captions leave the rest white


def test_an_empty_sheet_is_one_blank_row():
    sheet = contact_sheet([], [], cols=8, tile=32)
    assert sheet.size == (8 * 32, 32 + 2 * 13 + 4)


def test_save_contact_sheet_writes_a_png_in_a_new_folder(tmp_path):
    path = save_contact_sheet(tmp_path / "sheets" / "a.png", [_solid((0, 128, 0))] * 3, ["a", "b", "c"], cols=3)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (3 * 96, 96 + 2 * 13 + 4)
