"""Uploaded images (init images, masks): bounded in bytes and pixels, decompression bombs refused before
any pixel is decoded, and only PNG, JPEG and WebP accepted."""

from __future__ import annotations

import io
import warnings

from PIL import Image

from conjure.pipelines.request import MAX_INIT_PIXELS

FORMATS = ("PNG", "JPEG", "WEBP")


class UploadError(ValueError):
    """An upload the user must change; the message says what."""


def read_image(data: bytes, what: str, max_bytes: int, max_pixels: int = MAX_INIT_PIXELS) -> Image.Image:
    """Decode an uploaded image after checking its size in bytes, its format and its header's pixel count."""
    if not data:
        raise UploadError(f"the {what} is empty: upload a PNG, JPEG or WebP file")
    if len(data) > max_bytes:
        raise UploadError(f"the {what} is {len(data)} bytes; at most {max_bytes} are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                w, h = im.size   # from the header: nothing decoded yet
                if w * h > max_pixels:
                    raise UploadError(f"the {what} is {w}x{h} pixels; at most {max_pixels} pixels are accepted")
                im.load()
                return im.copy()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"the {what} would decode to too many pixels: at most {max_pixels} are accepted")
    except Exception as e:   # PIL raises several types for unreadable data
        raise UploadError(f"cannot read the {what} as an image ({type(e).__name__}); upload a PNG, JPEG "
                          "or WebP file") from None


def mask_from_alpha(image: Image.Image, what: str = "mask") -> Image.Image:
    """OpenAI's convention (transparent = repaint) to conjure's (white = repaint), as an L image."""
    if "A" not in image.getbands():
        raise UploadError(f"the {what} has no transparency: OpenAI-style edits repaint where the mask is "
                          "transparent, so upload a PNG with an alpha channel")
    alpha = image.getchannel("A")
    return alpha.point(lambda a: 255 if a < 128 else 0).convert("L")


def has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() and image.getchannel("A").getextrema()[0] < 128
