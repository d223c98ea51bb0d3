"""The invisible watermark: round trips, robustness, no detections on unmarked images, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conjure.provenance import watermark as wm
from tests.provenance.helpers import jpeg, synthetic_output

IDS = [1, 0xDEADBEEF, 2**32 - 1, 123456789]


@pytest.fixture(scope="module")
def marked():
    return [(wid, synthetic_output(i), wm.embed(synthetic_output(i), wid)) for i, wid in enumerate(IDS)]


def test_round_trip_is_exact_and_invisible(marked):
    for wid, original, image in marked:
        result = wm.detect(image)
        assert result.found and result.watermark_id == wid and result.score > 0.9
        diff = np.asarray(image, np.float64) - np.asarray(original, np.float64)
        assert 10 * np.log10(255**2 / np.mean(diff**2)) > 38          # PSNR in dB
        assert np.abs(diff).max() <= 12


def test_survives_jpeg75_and_resize(marked):
    for wid, _, image in marked:
        assert wm.detect(jpeg(image, 75)).watermark_id == wid
        small = image.resize((192, 192), Image.BICUBIC).resize((256, 256), Image.BICUBIC)
        assert wm.detect(small).watermark_id == wid
        # a resized copy that stays resized is found by trying the square output sizes
        assert wm.detect(image.resize((300, 300), Image.BICUBIC)).watermark_id == wid


def test_unmarked_images_are_not_detected():
    flat = [Image.new("RGB", (256, 256), c) for c in ("white", "black", (255, 0, 0), (128, 128, 128))]
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(3)]
    for image in flat + noise + [synthetic_output(100 + i) for i in range(8)]:
        result = wm.detect(image)
        assert not result.found and result.watermark_id is None


def test_library_hard_decisions_match_the_vectorised_decoder(marked):
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd
    rgb = np.asarray(marked[0][2])
    s0 = wm.block_values(rgb)
    yuv = wm._yuv(rgb)
    import pywt
    ll, _ = pywt.dwt2(yuv[..., wm.CHANNEL], "haar")
    lib = EmbedDwtDctSvd([], wmLen=wm.N_BITS)
    ours = (np.mod(s0, wm.SCALE) > wm.SCALE / 2).astype(int)
    theirs = [lib.infer_dct_svd(ll[i * 4:i * 4 + 4, j * 4:j * 4 + 4], wm.SCALE) for i in range(32) for j in range(32)]
    assert (ours == np.array(theirs)).mean() > 0.999


def test_bad_input():
    with pytest.raises(ValueError, match="watermark id"):
        wm.embed(synthetic_output(0), 0)
    with pytest.raises(ValueError, match="watermark id"):
        wm.embed(synthetic_output(0), 2**32)
    with pytest.raises(ValueError, match="at least 256x256"):
        wm.embed(Image.new("RGB", (128, 128)), 5)
    with pytest.raises(ValueError, match="RGB image"):
        wm.embed(np.zeros((256, 256), np.uint8), 5)
    assert not wm.detect(Image.new("RGB", (64, 64))).found   # too small to carry one: simply not found


def test_opencv_headless_coexists():
    import cv2
    assert cv2.cvtColor(np.zeros((2, 2, 3), np.uint8), cv2.COLOR_BGR2YUV).shape == (2, 2, 3)
