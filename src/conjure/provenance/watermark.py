"""Invisible watermark: a 32-bit id, Reed-Solomon coded, in `invisible-watermark`'s dwtDctSvd domain.

Payload: the id (4 bytes) + 11 Reed-Solomon parity bytes (corrects 5 wrong bytes, or 11 erased ones)
= 120 bits, + 1 pad bit so that the code length (121) is coprime with the 32 blocks in a row of a
256x256 image and each bit's repetitions spread over all rows and columns. The bits are whitened with a
fixed key stream, so that a flat, unmarked image (every block voting alike) cannot look like a codeword.

Embedding follows imwatermark's dwtDctSvd (U channel of YUV, one-level Haar DWT, 4x4 blocks of the LL band,
the largest singular value of each block's DCT quantised with step `SCALE`; bit i goes to every block
`num % 121 == i`) and uses the library's `EmbedDwtDctSvd.encode_frame`, with three changes measured to
matter on conjure's outputs (half of their pixels are pure white, and colours are saturated):
1. it runs in float (the library rounds YUV to uint8 between steps);
2. the singular value moves to the *nearest* point of the bit's lattice (at most SCALE/2, the library
   moves up to 3/4 SCALE), and the Haar detail bands go back in their own order (the library swaps them);
3. a pixel pushed out of [0, 255] is shifted by a grey offset, which leaves U (the watermark) unchanged;
   plain clipping erased every 1 bit in white areas.
With the library's encoder, bit errors on lossless 256x256 outputs were 7-25%; with these, 0%.

Detection averages a soft vote per block (-sin of the singular value's phase in the lattice, in [-1, 1]),
de-whitens, decodes Reed-Solomon (hard, then with the least reliable bytes erased) and scores the decoded
codeword against the soft votes (1 = every vote agrees). An image counts as marked when the code decodes and
the score is at least THRESHOLD (set from benchmarks/provenance.py: see benchmarks/results/provenance.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import pywt
import reedsolo
from imwatermark.dwtDctSvd import EmbedDwtDctSvd
from PIL import Image

ID_BYTES = 4
PARITY_BYTES = 11
N_BITS = (ID_BYTES + PARITY_BYTES) * 8 + 1    # 121
SCALE = 36.0                                  # quantisation step of the singular value (imwatermark's default)
CHANNEL = 1                                   # U of YUV
BLOCK = 4                                     # block size in the LL band (8x8 pixels)
MIN_SIDE = 256                                # imwatermark's minimum (256x256 pixels)
THRESHOLD = 0.30                              # detection score threshold, from measurement (see module doc)
_KEY = b"conjure-watermark-v1"
_RS = reedsolo.RSCodec(PARITY_BYTES)


@dataclass
class WatermarkResult:
    found: bool
    watermark_id: int | None      # the decoded id (None when nothing decodes)
    score: float                  # agreement of the soft votes with the decoded codeword, 0 when none decodes
    threshold: float = THRESHOLD

    def to_dict(self) -> dict:
        return {"found": self.found, "watermark_id": self.watermark_id, "score": round(self.score, 4),
                "threshold": self.threshold}


def _whitening() -> np.ndarray:
    stream = b"".join(hashlib.sha256(_KEY + bytes([i])).digest() for i in range(1 + N_BITS // 256))
    return np.unpackbits(np.frombuffer(stream, np.uint8))[:N_BITS]


_WHITE = _whitening()


def encode_bits(watermark_id: int) -> np.ndarray:
    """id -> the 121 whitened bits that are embedded."""
    if not isinstance(watermark_id, (int, np.integer)) or not 0 < watermark_id < 2**32:
        raise ValueError(f"a watermark id is an integer in 1..2**32-1, got {watermark_id!r}")
    codeword = bytes(_RS.encode(int(watermark_id).to_bytes(ID_BYTES, "big")))
    bits = np.append(np.unpackbits(np.frombuffer(codeword, np.uint8)), 0)
    return bits ^ _WHITE


class _NearestQIM(EmbedDwtDctSvd):
    """imwatermark's block embedding, moving the singular value to the nearest point of the bit's lattice."""

    def diffuse_dct_svd(self, block, wmBit, scale):
        u, s, v = np.linalg.svd(cv2.dct(block))
        offset = (0.25 + 0.5 * wmBit) * scale
        s[0] = np.round((s[0] - offset) / scale) * scale + offset
        return cv2.idct(u @ np.diag(s) @ v)


def _as_rgb(image, check_size: bool = True) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB image (H, W, 3) uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if check_size and not _big_enough(h, w):
        raise ValueError(f"the image is {w}x{h}; the watermark needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return image


def _big_enough(h: int, w: int) -> bool:
    return h * w >= MIN_SIDE * MIN_SIDE and min(h, w) >= 64


def fits(width: int, height: int) -> bool:
    """Whether an image of this size can carry the watermark (at least MIN_SIDE x MIN_SIDE pixels)."""
    return _big_enough(height, width)


def _yuv(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb[..., ::-1].astype(np.float32) / 255.0, cv2.COLOR_BGR2YUV) * 255.0


def embed(image, watermark_id: int) -> Image.Image:
    """Return a copy of `image` (PIL or (H, W, 3) uint8) carrying `watermark_id`."""
    rgb = _as_rgb(image)
    h, w = (rgb.shape[0] // 8) * 8, (rgb.shape[1] // 8) * 8
    yuv = _yuv(rgb[:h, :w])
    ll, details = pywt.dwt2(yuv[..., CHANNEL], "haar")                         # (h/2, w/2)
    bits = encode_bits(watermark_id)
    _NearestQIM(list(bits), wmLen=N_BITS, block=BLOCK).encode_frame(ll, SCALE)
    yuv[..., CHANNEL] = pywt.idwt2((ll, details), "haar")
    out = cv2.cvtColor(yuv / 255.0, cv2.COLOR_YUV2BGR)[..., ::-1] * 255.0       # (h, w, 3) RGB float
    # a grey offset keeps U and V: move out-of-range pixels back into [0, 255] with one
    out -= np.maximum(out.max(axis=-1, keepdims=True) - 255.0, 0.0)
    out += np.maximum(-out.min(axis=-1, keepdims=True), 0.0)
    result = rgb.copy()
    result[:h, :w] = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return Image.fromarray(result)


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (what cv2.dct applies): dct(B) = D @ B @ D.T."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d


_D = _dct_matrix(BLOCK)


def block_values(rgb: np.ndarray) -> np.ndarray:
    """The largest singular value of each block's DCT, in embedding order: (N,) for N blocks."""
    h, w = (rgb.shape[0] // 8) * 8, (rgb.shape[1] // 8) * 8
    ll, _ = pywt.dwt2(_yuv(rgb[:h, :w])[..., CHANNEL], "haar")                  # (h/2, w/2)
    rows, cols = ll.shape[0] // BLOCK, ll.shape[1] // BLOCK
    blocks = ll[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, BLOCK, BLOCK)                                    # (N, 4, 4)
    return np.linalg.svd(_D @ blocks @ _D.T, compute_uv=False)[:, 0]


def soft_bits(rgb: np.ndarray) -> np.ndarray:
    """Per embedded bit, the mean soft vote in [-1, 1] (> 0: a 1), de-whitened: (N_BITS,)."""
    s0 = block_values(rgb)
    votes = -np.sin(2 * np.pi * np.mod(s0, SCALE) / SCALE)
    which = np.arange(len(s0)) % N_BITS
    v = np.bincount(which, votes, minlength=N_BITS) / np.maximum(np.bincount(which, minlength=N_BITS), 1)
    return np.where(_WHITE == 1, -v, v)


def _rs_decode(v: np.ndarray) -> bytes | None:
    """The corrected 15-byte codeword from soft bits, or None when the code does not decode."""
    data = v[:N_BITS - 1]
    received = bytearray(np.packbits(data > 0).tobytes())
    reliability = np.abs(data).reshape(-1, 8).min(axis=1)
    for erased in (0, 4, 8):
        erase = sorted(np.argsort(reliability)[:erased].tolist()) if erased else None
        try:
            _, codeword, _ = _RS.decode(bytes(received), erase_pos=erase)
            return bytes(codeword)
        except reedsolo.ReedSolomonError:
            continue
    return None


def detect_array(rgb: np.ndarray) -> WatermarkResult:
    """Decode at the image's own size."""
    v = soft_bits(rgb)
    codeword = _rs_decode(v)
    if codeword is None:
        return WatermarkResult(False, None, 0.0)
    bits = np.append(np.unpackbits(np.frombuffer(codeword, np.uint8)), 0).astype(np.float64)
    score = float(np.mean((2 * bits - 1) * v))
    wid = int.from_bytes(codeword[:ID_BYTES], "big")
    return WatermarkResult(score >= THRESHOLD and wid != 0, wid if wid else None, score)


def detect(image, sizes: tuple[int, ...] = (256, 512, 1024)) -> WatermarkResult:
    """Look for a watermark at the image's own size, then (for a resized square copy) at each of `sizes`."""
    rgb = _as_rgb(image, check_size=False)
    h, w = rgb.shape[:2]
    best = detect_array(rgb) if _big_enough(h, w) else WatermarkResult(False, None, 0.0)
    square = abs(h - w) <= 0.02 * max(h, w)
    for size in sizes:
        if best.found or not square or (h, w) == (size, size):
            continue
        result = detect_array(np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC)))
        if result.found or result.score > best.score:
            best = result
    return best
