"""Dataset sources: each reads one registry package and yields captioned items with a licence.

A source never downloads anything. When its package is missing, it raises MissingSource with the
command that installs it.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from conjure.config import Settings

IMAGE_SIZE = 64   # every emoji and icon is stored at this size (RGB on white)

SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}
_GENDER_WORDS = {"man": "man", "men": "man", "boy": "man", "woman": "woman", "women": "woman", "girl": "woman",
                 "person": "person", "people": "person", "child": "person", "adult": "person"}


class MissingSource(RuntimeError):
    """A source's registry package is not installed; the message says how to install it."""


@dataclass
class Item:
    """One training example. `image` is uint8 (H, W, 3); `captions[0]` is the canonical caption."""

    image: np.ndarray
    captions: list[str]
    name: str
    source: str
    licence: str
    group: str                     # concept key: every item of one group lands in the same split
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceInfo:
    name: str
    kind: str                      # "emoji" | "icon" | "photo"
    licence: str
    package: str                   # what provides it, as the installer names it
    install_hint: str
    build: Callable[[Settings], Iterator[Item]]


# --------------------------------------------------------------------------------------- helpers

def _npm_package(settings: Settings, package: str) -> Path:
    path = settings.npm_dir / package
    if not path.is_dir():
        raise MissingSource(
            f"data source package '{package}' is not installed under {settings.npm_dir}. "
            f"Install the data packages with: npm ci --prefix data/npm   (or: make setup)")
    return path


def _on_white(rgba: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Composite an RGBA image onto white and resize it to (size, size, 3) uint8."""
    rgba = rgba.convert("RGBA")
    if rgba.size != (size, size):
        rgba = rgba.resize((size, size), Image.LANCZOS)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)


def render_svg(svg_path: Path, size: int = IMAGE_SIZE, pad: int = 0) -> np.ndarray:
    """Render an SVG file offline (resvg, cairosvg as fallback) to uint8 (size, size, 3) on white."""
    inner = size - 2 * pad
    text = svg_path.read_text(encoding="utf-8")
    try:
        import resvg_py
        png = bytes(resvg_py.svg_to_bytes(svg_string=text, width=inner, height=inner))
    except Exception:   # old or unusual SVGs that resvg refuses
        import cairosvg
        png = cairosvg.svg2png(bytestring=text.encode(), output_width=inner, output_height=inner)
    img = Image.open(io.BytesIO(png)).convert("RGBA")
    if img.size != (inner, inner):
        img = img.resize((inner, inner), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(img, (pad, pad))
    return _on_white(canvas, size)


def _words(name: str) -> str:
    name = str(name).replace("_", " ").replace("-", " ").replace(":", "")
    return re.sub(r"\s+", " ", name).strip().lower()


def gender_of(name: str, category: str = "People & Body") -> str:
    """The gender word a people emoji's name uses ("man", "woman", "person"), else "none"
    (so that "flag: Isle of Man" has none)."""
    if category != "People & Body":
        return "none"
    for word in _words(name).split():
        if word in _GENDER_WORDS:
            return _GENDER_WORDS[word]
    return "none"


def _emoji_key(hexcode: str) -> str:
    """Normalise an emoji code point sequence: lower case, no variation selector, no skin tone."""
    parts = [p for p in hexcode.lower().split("-") if p != "fe0f" and p.upper() not in SKIN_TONES]
    return "-".join(parts)


def _skin_of(hexcode: str) -> str:
    tones = [SKIN_TONES[p] for p in hexcode.upper().split("-") if p in SKIN_TONES]
    if not tones:
        return "none"
    return tones[0] if len(set(tones)) == 1 else "mixed"


def _emojibase(settings: Settings) -> dict[str, dict]:
    """Map normalised full hexcode (skin kept) -> {'label', 'tags', 'base'} from emojibase-data."""
    root = _npm_package(settings, "emojibase-data")
    table: dict[str, dict] = {}
    for entry in json.loads((root / "en" / "data.json").read_text()):
        base = _emoji_key(entry["hexcode"])
        tags = entry.get("tags", [])
        table[_full_key(entry["hexcode"])] = {"label": entry["label"], "tags": tags, "base": base}
        for skin in entry.get("skins", []) or []:
            table[_full_key(skin["hexcode"])] = {"label": skin["label"], "tags": tags, "base": base}
    return table


def _full_key(hexcode: str) -> str:
    return "-".join(p for p in hexcode.lower().split("-") if p != "fe0f")


def _emoji_categories(settings: Settings) -> dict[str, tuple[str, str]]:
    """Normalised base hexcode -> (category, subcategory) from emoji-datasource."""
    root = _npm_package(settings, "emoji-datasource-google")
    return {_emoji_key(e["unified"]): (e["category"], e["subcategory"])
            for e in json.loads((root / "emoji.json").read_text())}


def _emoji_captions(label: str, tags: list[str]) -> list[str]:
    label = _words(label)
    caps = [label, f"{label} emoji", f"an emoji of {label}"]
    caps += [f"{_words(t)} emoji" for t in tags[:3] if _words(t) != label]
    return caps


# --------------------------------------------------------------------------------------- emoji

def build_noto(settings: Settings) -> Iterator[Item]:
    root = _npm_package(settings, "emoji-datasource-google")
    names = _emojibase(settings)
    img_dir = root / "img" / "google" / "64"
    for e in json.loads((root / "emoji.json").read_text()):
        variants = [(e["unified"], e["image"])]
        variants += [(v["unified"], v["image"]) for v in (e.get("skin_variations") or {}).values()]
        for hexcode, image in variants:
            path = img_dir / image
            if not path.is_file():
                continue
            info = names.get(_full_key(hexcode))
            label = info["label"] if info else e["name"]
            tags = info["tags"] if info else []
            yield Item(
                image=_on_white(Image.open(path)), captions=_emoji_captions(label, tags), name=_words(label),
                source="noto", licence="Apache-2.0", group="emoji:" + _emoji_key(hexcode),
                labels={"category": e["category"], "subcategory": e["subcategory"],
                        "skin_tone": _skin_of(hexcode), "gender": gender_of(label, e["category"])})


def build_twemoji(settings: Settings) -> Iterator[Item]:
    root = _npm_package(settings, "@twemoji/svg")
    names = _emojibase(settings)
    cats = _emoji_categories(settings)
    for path in sorted(root.glob("*.svg")):
        info = names.get(_full_key(path.stem))
        if info is None:   # a file with no name in emojibase (rare): no caption, so skip it
            continue
        cat, sub = cats.get(info["base"], ("Unknown", "unknown"))
        yield Item(
            image=render_svg(path, pad=2), captions=_emoji_captions(info["label"], info["tags"]),
            name=_words(info["label"]), source="twemoji", licence="CC-BY-4.0",
            group="emoji:" + info["base"],
            labels={"category": cat, "subcategory": sub, "skin_tone": _skin_of(path.stem),
                    "gender": gender_of(info["label"], cat)})


# --------------------------------------------------------------------------------------- icons

_STYLE_WORDS = {"outline", "outlined", "filled", "fill", "solid"}


def _icon_group(name: str) -> str:
    return "icon:" + " ".join(w for w in _words(name).split() if w not in _STYLE_WORDS)


def _icon_item(path: Path, name: str, source: str, licence: str, category: str, tags: list[str]) -> Item:
    words = _words(name)
    caps = [f"{words} icon", words, f"an icon of {words}"]
    caps += [f"{_words(t)} icon" for t in tags[:3] if _words(t) and _words(t) != words]
    return Item(image=render_svg(path, pad=6), captions=caps, name=words, source=source, licence=licence,
                group=_icon_group(name), labels={"category": _words(category) or "none"})


def build_mdi(settings: Settings) -> Iterator[Item]:
    root = _npm_package(settings, "@mdi/svg")
    meta = {m["name"]: m for m in json.loads((root / "meta.json").read_text())}
    for path in sorted((root / "svg").glob("*.svg")):
        m = meta.get(path.stem, {})
        tags = m.get("tags") or []
        category = tags[0] if tags else "none"
        yield _icon_item(path, path.stem, "mdi", "Apache-2.0", category, m.get("aliases") or [])


def build_tabler(settings: Settings) -> Iterator[Item]:
    root = _npm_package(settings, "@tabler/icons")
    meta = json.loads((root / "icons.json").read_text())
    for style in ("outline", "filled"):
        for path in sorted((root / "icons" / style).glob("*.svg")):
            m = meta.get(path.stem, {})
            name = path.stem if style == "outline" else f"{path.stem} filled"
            yield _icon_item(path, name, "tabler", "MIT", m.get("category") or "none", m.get("tags") or [])


def build_lucide(settings: Settings) -> Iterator[Item]:
    root = _npm_package(settings, "lucide-static")
    tags = json.loads((root / "tags.json").read_text())
    for path in sorted((root / "icons").glob("*.svg")):
        yield _icon_item(path, path.stem, "lucide", "ISC", "none", tags.get(path.stem, []))


def build_bootstrap(settings: Settings) -> Iterator[Item]:
    root = _npm_package(settings, "bootstrap-icons")
    for path in sorted((root / "icons").glob("*.svg")):
        yield _icon_item(path, path.stem, "bootstrap", "MIT", "none", [])


# --------------------------------------------------------------------------------------- photos

FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot"]


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def build_fashion_mnist(settings: Settings) -> Iterator[Item]:
    root = settings.fashion_mnist_dir
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        raise MissingSource(f"Fashion-MNIST is not installed under {root}. "
                            "Install it with: sudo apt-get install dataset-fashion-mnist")
    for part in ("train", "t10k"):
        images = _idx(root / f"{part}-images-idx3-ubyte.gz")
        labels = _idx(root / f"{part}-labels-idx1-ubyte.gz")
        for i, (img, lab) in enumerate(zip(images, labels)):
            cls = FASHION_CLASSES[int(lab)]
            # Dark garment on white, like the emoji and icons; one group per image, split kept official.
            rgb = np.repeat((255 - img)[:, :, None], 3, axis=2)
            yield Item(image=rgb, captions=[f"a photo of a {cls}", cls, f"a {cls}"], name=cls,
                       source="fashion_mnist", licence="MIT", group=f"fashion:{part}:{i}",
                       labels={"class": cls, "official_split": "test" if part == "t10k" else "train"})


SOURCES: dict[str, SourceInfo] = {
    "noto": SourceInfo("noto", "emoji", "Apache-2.0", "emoji-datasource-google (npm)",
                       "npm ci --prefix data/npm", build_noto),
    "twemoji": SourceInfo("twemoji", "emoji", "CC-BY-4.0", "@twemoji/svg + emojibase-data (npm)",
                          "npm ci --prefix data/npm", build_twemoji),
    "mdi": SourceInfo("mdi", "icon", "Apache-2.0", "@mdi/svg (npm)", "npm ci --prefix data/npm", build_mdi),
    "tabler": SourceInfo("tabler", "icon", "MIT", "@tabler/icons (npm)", "npm ci --prefix data/npm", build_tabler),
    "lucide": SourceInfo("lucide", "icon", "ISC", "lucide-static (npm)", "npm ci --prefix data/npm", build_lucide),
    "bootstrap": SourceInfo("bootstrap", "icon", "MIT", "bootstrap-icons (npm)", "npm ci --prefix data/npm",
                            build_bootstrap),
    "fashion_mnist": SourceInfo("fashion_mnist", "photo", "MIT", "dataset-fashion-mnist (Debian)",
                                "sudo apt-get install dataset-fashion-mnist", build_fashion_mnist),
}
