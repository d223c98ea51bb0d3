"""The studio page end to end in headless Chromium (Debian's, driven by Playwright; never a downloaded
browser) against a real server with the random tiny model: the form, live progress, the gallery with
metadata and verdicts, a refused prompt, re-run, variations, editing, downloads, and screenshots."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import MODEL, make_settings, start_live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}    # a laptop
REFUSED_PROMPT = "a massacre in the street, bodies everywhere, photorealistic"
JOB_S = 60_000                                # ms: the longest wait for one job in the page

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason="Debian's chromium is not installed (/usr/bin/chromium): "
                                       "`make system-deps` as root, or apt-get install chromium")


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir, tiny_music_model):
    settings = make_settings(tmp_path_factory.mktemp("studio-home"), tiny_model_dir, music_model=tiny_music_model)
    live, _, stop = start_live_server(settings)
    yield live
    stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright   # pinned in requirements.txt; it never fetches a browser
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(JOB_S)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text)   # answered 4xx statuses are the page's to explain, not errors
          if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    elsewhere: list[str] = []      # the page must load nothing from another origin (no CDN, no fonts)
    own = (studio.url + "/", "data:", "blob:")
    pg.on("request", lambda r: None if r.url.startswith(own) else elsewhere.append(r.url))
    # count step previews as they arrive (a tiny-model job can start and end between two looks from the test)
    pg.add_init_script("""new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes)
        if (n.querySelectorAll) window.__previews = (window.__previews || 0) + n.querySelectorAll('img.preview').length;
    }).observe(document, {subtree: true, childList: true});""")
    pg.goto(studio.url + "/")
    pg.wait_for_selector("body[data-ready=true]")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not elsewhere, f"requests to other origins: {elsewhere}"


def fill(page, prompt: str, **fields) -> None:
    page.fill("#prompt", prompt)
    for name, value in fields.items():
        if page.eval_on_selector(f"#{name}", "e => e.tagName") == "SELECT":
            page.select_option(f"#{name}", str(value))
        else:
            page.fill(f"#{name}", str(value))


def newest_card(page, status: str):
    return page.wait_for_selector(f"#jobs > li.job[data-status={status}]", timeout=JOB_S)


def check_screenshot(path: Path, size: tuple[int, int]) -> None:
    """A real picture of the page: the right size, many colours, not one flat background."""
    im = Image.open(path)
    assert im.format == "PNG" and im.size == size, (im.format, im.size)
    px = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert px.std() > 10, f"{path.name} looks blank (pixel std {px.std():.1f})"
    assert len(np.unique(px.reshape(-1, 3)[::7], axis=0)) > 200, f"{path.name} has too few colours"


def test_the_page_serves_with_its_assets_and_every_control_has_a_label(studio, page):
    for asset in ("studio.css", "studio.js", "cards.js", "favicon.svg"):
        assert studio.client.get(f"/studio/{asset}").status_code == 200
    assert studio.client.get("/studio/..%2Fapp.py").status_code == 404
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
    assert unlabeled == []
    assert page.eval_on_selector("#model", "e => e.value") == MODEL        # the server's default model
    assert page.eval_on_selector_all("#scheduler option", "os => os.map(o => o.value)")[1:] == \
        studio.client.get("/studio/config.json").json()["schedulers"]
    assert page.eval_on_selector_all("#size option", "os => os.map(o => o.value)") == ["", "64", "128", "256"]
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "horizontal scroll at laptop width"
    assert page.get_attribute("#steps", "placeholder").startswith("default ")   # the model's own default
    page.focus("#prompt")
    for expected in ("negative_prompt", "model", "size"):      # the keyboard walks the form in reading order
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == expected
    assert page.evaluate("getComputedStyle(document.activeElement).boxShadow") != "none"   # a visible focus ring
    page.focus("#refresh")
    assert page.evaluate("getComputedStyle(document.activeElement).boxShadow") != "none"


def test_generate_shows_progress_then_the_images_with_metadata_verdicts_and_downloads(studio, page, tmp_path):
    # 25 steps: long enough that the page's event stream (polled every 0.25 s) sees a step preview before the
    # job ends and its preview is cleared; with 6 steps a fast, idle machine could finish first
    fill(page, "red apple", negative_prompt="blurry", n=2, seed=7, steps=25, guidance=3, scheduler="ddim", size=256)
    page.click("#generate")
    page.wait_for_selector("#jobs > li.job .live progress", timeout=5000)       # progress shows at once
    card = newest_card(page, "succeeded")
    assert page.evaluate("window.__previews || 0") >= 1, "no step preview was shown"
    figures = card.query_selector_all("figure.out")
    assert [f.get_attribute("data-seed") for f in figures] == ["7", "8"]
    page.wait_for_function("""() => [...document.querySelectorAll('#jobs > li.job figure.out img')]
        .every(i => i.complete && i.naturalWidth === 256)""")
    card.query_selector("details.params-box summary").click()
    params = card.query_selector(".params").inner_text()
    for text in (MODEL, "256 px", "ddim", "25", "3", "fp32"):
        assert text in params
    assert "blurry" in card.query_selector(".neg").inner_text()
    card.query_selector("details.safety-box summary").click()
    rows = card.query_selector_all("table.verdicts tbody tr")
    assert [r.query_selector("td").inner_text() for r in rows] == ["prompt", "image 1", "image 2"]
    assert all(r.query_selector("td.act").inner_text() == "allow" for r in rows)
    link = figures[0].query_selector("a.download")
    assert link.get_attribute("download").endswith("seed7.png")
    r = studio.client.get(link.get_attribute("href"))
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (256, 256)
    shot = tmp_path / "studio-generated.png"
    page.screenshot(path=str(shot))
    check_screenshot(shot, (VIEWPORT["width"], VIEWPORT["height"]))


def test_a_refused_prompt_shows_its_verdict_instead_of_an_image(studio, page, tmp_path):
    page.focus("#prompt")
    page.keyboard.type(REFUSED_PROMPT)
    page.keyboard.press("Control+Enter")          # the keyboard path submits too
    card = newest_card(page, "refused")
    assert card.query_selector("img") is None
    assert card.query_selector(".v-category").inner_text() == "violence"
    assert card.query_selector(".v-check").inner_text() == "combination"
    assert "massacre" in card.query_selector(".v-reason").inner_text()
    assert "Refused by the content policy" in card.inner_text()
    assert card.query_selector("button:text-is('Re-run')") is None           # it would be refused again
    assert "Refused by the content policy: violence" in page.inner_text("#announce")
    shot = tmp_path / "studio-refused.png"
    card.screenshot(path=str(shot))
    assert Image.open(shot).size[0] > 300
    page.screenshot(path=str(tmp_path / "studio-full.png"), full_page=True)
    check_screenshot(tmp_path / "studio-full.png", Image.open(tmp_path / "studio-full.png").size)


def click_for_new_job(page, selector: str) -> str:
    """Click, then wait for one more card on top of the gallery and for its job to succeed; its id."""
    before = page.eval_on_selector_all("#jobs > li.job", "cards => cards.length")
    page.click(selector)
    page.wait_for_function("""(n) => document.querySelectorAll('#jobs > li.job').length === n &&
        document.querySelector('#jobs > li.job').dataset.status === 'succeeded'""", arg=before + 1)
    return page.eval_on_selector("#jobs > li.job", "card => card.id")[len("job-"):]


def test_music_mode_composes_a_tune_with_a_player_and_a_midi_download(studio, page):
    page.click("#music-group > summary")
    page.check("#music")
    fill(page, "a lively jig in D major", bars=4, audio_format="mp3")
    job_id = click_for_new_job(page, "#generate")
    card = page.query_selector(f"#job-{job_id}")
    assert card.query_selector("img") is None and card.query_selector("button:text-is('Variations')") is None
    src = card.query_selector("audio").get_attribute("src")
    got = page.request.get(src)
    assert got.status == 200 and got.headers["content-type"] == "audio/mpeg" and len(got.body()) > 1000
    midi = card.query_selector("a.download[title='Download the MIDI file']")
    assert page.request.get(midi.get_attribute("href")).body()[:4] == b"MThd"
    assert "4 bars" in card.inner_text() and "a lively jig in D major" in card.inner_text()
    page.uncheck("#music")


def test_rerun_repeats_the_parameters_and_variations_change_the_seed(studio, page):
    fill(page, "blue circle", n=1, seed=11, steps=2, size=256)
    first = click_for_new_job(page, "#generate")
    rerun = click_for_new_job(page, f"#job-{first} button:text-is('Re-run')")
    variation = click_for_new_job(page, f"#job-{first} button:text-is('Variations')")
    original, rerun, variation = (studio.client.get(f"/v1/jobs/{i}").json()["spec"] for i in (first, rerun, variation))
    keys = ("prompt", "n", "steps", "size", "model", "scheduler", "guidance")
    assert rerun == original
    assert {k: variation[k] for k in keys} == {k: original[k] for k in keys} and variation["seed"] != original["seed"]


def test_an_init_image_and_mask_make_an_editing_job(studio, page, tmp_path):
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    Image.new("RGB", (256, 256), (200, 40, 40)).save(init)
    m = Image.new("L", (256, 256), 0)
    m.paste(255, (64, 64, 192, 192))
    m.save(mask)
    fill(page, "red square", n=1, seed=3, steps=2, size=256)
    page.click("#edit-group > summary")
    page.set_input_files("#init_image", str(init))
    page.set_input_files("#mask", str(mask))
    page.fill("#strength", "0.5")          # a range input: fill sets its value
    assert page.eval_on_selector_all("#edit-previews img", "is => is.length") == 2
    job_id = click_for_new_job(page, "#generate")
    card = page.query_selector(f"#job-{job_id}")
    spec = studio.client.get(f"/v1/jobs/{job_id}").json()["spec"]
    assert spec["init_image"] and spec["mask"] and spec["strength"] == 0.5
    assert "edit" in card.query_selector(".job-meta").inner_text()


def test_a_bad_parameter_is_explained_next_to_the_form(page):
    fill(page, "red apple", n=99)
    page.click("#generate")
    error = page.wait_for_selector("#form-error:not([hidden])", timeout=5000)
    assert error.inner_text().startswith("n:")


def test_many_jobs_at_once_all_finish_in_the_gallery_and_delete_removes_one(studio, page):
    """More unfinished jobs than the page streams at once (the rest are polled), then a delete."""
    fill(page, "green tree", n=1, steps=2, size=256)
    for _ in range(5):
        page.click("#generate")
        page.wait_for_function("() => !document.querySelector('#generate').disabled")
    page.wait_for_function("""() => { const cards = [...document.querySelectorAll('#jobs > li.job')].slice(0, 5);
        return cards.length === 5 && cards.every(c => c.dataset.status === 'succeeded'); }""")
    card_id = page.eval_on_selector("#jobs > li.job", "card => card.id")
    page.click(f"#{card_id} button:text-is('Delete')")
    page.wait_for_selector(f"#{card_id}", state="detached", timeout=5000)
    assert studio.client.get(f"/v1/jobs/{card_id[len('job-'):]}").status_code == 404


def test_with_auth_required_the_page_asks_for_a_key_and_shows_only_that_users_jobs(studio, browser):
    from conjure.service.auth import create_key
    with studio.app.state.ctx.sessions() as s, s.begin():
        key, _ = create_key(s, "studio-user", "user", 0, 0)
    studio.settings.require_auth = True
    context = browser.new_context(viewport=VIEWPORT)
    try:
        pg = context.new_page()
        pg.goto(studio.url + "/")
        pg.wait_for_selector("body[data-ready=true]")
        assert pg.is_visible("#api-key")
        assert "needs an API key" in pg.inner_text("#form-error")
        pg.fill("#api-key", key)
        pg.press("#api-key", "Enter")          # change event: the page lists this user's jobs
        pg.wait_for_selector("#empty:not([hidden])")
        assert pg.is_hidden("#form-error")
        fill(pg, "yellow star", n=1, steps=2, size=256)
        pg.click("#generate")
        card = newest_card(pg, "succeeded")
        assert pg.eval_on_selector_all("#jobs > li.job", "cards => cards.length") == 1   # not the admin's jobs
        assert card.query_selector("figure.out img")
    finally:
        studio.settings.require_auth = False
        context.close()
