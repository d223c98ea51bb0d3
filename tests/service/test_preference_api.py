"""The preference API behind the studio's Rate panel, through the real app with auth required: blind pairs per
rater, votes stored once, Bradley-Terry scores, and 4xx answers that say what to change. The pairs' images are
small fake PNGs (one colour per contestant), so the test can play a rater with known preferences."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conjure.config import Settings
from conjure.db import session_factory
from conjure.evaluation.preference import PreferenceStore
from conjure.service.auth import create_key

COLORS = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]   # contestant c's images are COLORS[c]
STRENGTH = [0.0, 1.0, 2.0]                         # the simulated raters prefer contestant 2, then 1, then 0


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from conjure.service import app as app_module
    home = tmp_path_factory.mktemp("preference-home")
    settings = Settings(home=home, require_auth=True)
    store = PreferenceStore(settings)
    rng = np.random.default_rng(0)
    for name, k, n_pairs in (("trio", 3, 30), ("quiet", 2, 2)):
        store.create_study(name, [{"steps": 5 * (c + 1)} for c in range(k)])
        for p in range(n_pairs):
            a, b = (int(x) for x in rng.choice(k, 2, replace=False))
            files = []
            for c in (a, b):
                path = store.folder(name) / f"{p}-{c}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), COLORS[c]).save(path)
                files.append(path.name)
            store.add_pair(name, f"prompt {p}", p, a, b, *files, a_left=bool(rng.integers(2)))
    with session_factory(settings.db_url)() as s, s.begin():
        keys = {user: create_key(s, user, "user", 0, 0)[0] for user in ("alice", "bob")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app_module, "warm_screens", lambda: None)   # no prompt screening happens here
        with TestClient(app_module.create_app(settings)) as client:
            yield client, {user: {"Authorization": f"Bearer {key}"} for user, key in keys.items()}


def contestant_of(data_uri: str) -> int:
    assert data_uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))) as im:
        return COLORS.index(im.convert("RGB").getpixel((0, 0)))


def test_round_trip_recovers_the_raters_ranking(api):
    client, auth = api
    studies = client.get("/v1/preference/studies", headers=auth["alice"]).json()["data"]
    assert [(s["name"], s["pairs"], s["votes"]) for s in studies] == [("trio", 30, 0), ("quiet", 2, 0)]
    assert studies[0]["contestants"] == ["conjure-tiny steps=5", "conjure-tiny steps=10", "conjure-tiny steps=15"]
    rng = np.random.default_rng(1)
    seen = []
    for user in ("alice", "bob"):
        while (pair := client.get("/v1/preference/studies/trio/next", headers=auth[user]).json()["pair"]):
            assert set(pair) == {"id", "prompt", "left_image", "right_image", "votes"}   # nothing names a contestant
            left, right = contestant_of(pair["left_image"]), contestant_of(pair["right_image"])
            seen.append(left < right)
            p_left = 1 / (1 + np.exp(STRENGTH[right] - STRENGTH[left]))
            choice = "left" if rng.random() < p_left else "right"
            r = client.post("/v1/preference/studies/trio/votes", json={"pair_id": pair["id"], "choice": choice},
                            headers=auth[user])
            assert r.status_code == 201, r.text
            assert r.json() == {"id": r.json()["id"], "pair_id": pair["id"], "choice": choice, "rater": user}
    assert len(seen) == 60 and 10 < sum(seen) < 50   # each rater saw every pair once; sides vary
    scores = client.get("/v1/preference/studies/trio/scores", params={"boot": 200}, headers=auth["bob"]).json()
    assert scores["n_votes"] == 60 and scores["n_pairs"] == 30 and scores["n_boot"] == 200
    assert [c["index"] for c in scores["contestants"]] == [2, 1, 0]
    for c in scores["contestants"]:
        assert c["ci_low"] < c["score"] < c["ci_high"] and c["wins"] + c["losses"] + c["ties"] == c["n"]
    again = client.get("/v1/preference/studies/trio/scores", params={"boot": 200}, headers=auth["alice"]).json()
    assert again == scores   # seeded bootstrap: the same answer every time


def test_a_pair_takes_one_vote_per_rater_and_skips_work(api):
    client, auth = api
    first = client.get("/v1/preference/studies/quiet/next", headers=auth["alice"]).json()["pair"]
    other = client.get("/v1/preference/studies/quiet/next", params={"skip": [first["id"]]},
                       headers=auth["alice"]).json()["pair"]
    assert other["id"] != first["id"]
    url = "/v1/preference/studies/quiet/votes"
    assert client.post(url, json={"pair_id": first["id"], "choice": "tie"}, headers=auth["alice"]).status_code == 201
    again = client.post(url, json={"pair_id": first["id"], "choice": "left"}, headers=auth["alice"])
    assert again.status_code == 409 and "has rated pair" in again.json()["detail"]
    assert client.post(url, json={"pair_id": first["id"], "choice": "left"}, headers=auth["bob"]).status_code == 201
    nxt = client.get("/v1/preference/studies/quiet/next", headers=auth["alice"]).json()
    assert nxt == {"study": "quiet", "pair": nxt["pair"]} and nxt["pair"]["id"] == other["id"]
    scores = client.get("/v1/preference/studies/quiet/scores", headers=auth["alice"]).json()
    assert {c["ties"] for c in scores["contestants"]} == {1.0}


@pytest.mark.parametrize("method, path, body, status, words", [
    ("get", "/v1/preference/studies/nope/next", None, 404, "unknown study 'nope'; known studies: trio, quiet"),
    ("get", "/v1/preference/studies/nope/scores", None, 404, "unknown study 'nope'"),
    ("post", "/v1/preference/studies/nope/votes", {"pair_id": 1, "choice": "left"}, 404, "unknown study"),
    ("post", "/v1/preference/studies/trio/votes", {"pair_id": 9999, "choice": "left"}, 404, "has no pair 9999"),
    ("post", "/v1/preference/studies/trio/votes", {"pair_id": 1, "choice": "up"}, 422, "choice"),
    ("post", "/v1/preference/studies/trio/votes", {"pair_id": 0, "choice": "left"}, 422, "pair_id"),
    ("get", "/v1/preference/studies/trio/scores?boot=0", None, 422, "boot"),
    ("get", "/v1/preference/studies/..bad/next", None, 422, "name"),
])
def test_bad_input_is_a_4xx_that_says_what_to_change(api, method, path, body, status, words):
    client, auth = api
    r = getattr(client, method)(path, headers=auth["bob"], **({"json": body} if body else {}))
    assert r.status_code == status, r.text
    assert words in r.text


def test_a_study_without_votes_has_no_scores_yet(api, tmp_path):
    client, auth = api
    store = PreferenceStore(client.app.state.ctx.settings)
    store.create_study("fresh", [{"steps": 1}, {"steps": 2}])
    r = client.get("/v1/preference/studies/fresh/scores", headers=auth["bob"])
    assert r.status_code == 409 and "has no votes yet" in r.json()["detail"]
    assert client.get("/v1/preference/studies/fresh/next", headers=auth["bob"]).json() == {"study": "fresh",
                                                                                           "pair": None}


def test_an_api_key_is_needed_where_auth_is_required(api):
    client, _ = api
    for path in ("/v1/preference/studies", "/v1/preference/studies/trio/next", "/v1/preference/studies/trio/scores"):
        assert client.get(path).status_code == 401
    r = client.post("/v1/preference/studies/trio/votes", json={"pair_id": 1, "choice": "left"})
    assert r.status_code == 401


def test_the_studio_has_a_rate_panel(api):
    client, _ = api
    page = client.get("/").text
    assert 'id="rate"' in page and 'id="rate-left"' in page and 'id="rate-scores"' in page
    script = client.get("/studio/studio.js").text
    assert "/v1/preference/studies" in script


# ---- the studio's Rate panel in a real browser ---------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian's chromium is not installed (/usr/bin/chromium)")
def test_rate_panel_in_a_browser(tmp_path_factory, tmp_path):
    """Keyless local mode: the panel appears because a study exists, votes by button and by key, shows scores."""
    from playwright.sync_api import sync_playwright   # it never fetches a browser: the system Chromium runs

    from .conftest import start_live_server
    settings = Settings(home=tmp_path_factory.mktemp("rate-home"))
    store = PreferenceStore(settings)
    store.create_study("browser", [{"name": "red"}, {"name": "blue"}])
    for p in range(3):
        files = []
        for c, color in ((0, (220, 40, 40)), (1, (40, 40, 220))):
            path = store.folder("browser") / f"{p}-{c}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 64), color).save(path)
            files.append(path.name)
        store.add_pair("browser", f"a square number {p}", p, 0, 1, *files, a_left=p % 2 == 0)
    live, _, stop = start_live_server(settings, worker_threads=0)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(live.url)
            page.wait_for_selector("body[data-ready=true]")
            assert page.is_visible("#rate") and page.is_visible("#rate-link")
            assert page.text_content("#rate-prompt") == "a square number 0"
            assert page.is_visible("#rate-scores-empty")
            page.click("#rate-left")                                   # pair 0 shows red on the left
            page.wait_for_function("() => document.querySelector('#rate-prompt').textContent.endsWith('1')")
            page.focus("#rate-tie")
            page.keyboard.press("2")                                   # pair 1 shows red on the right
            page.wait_for_function("() => document.querySelector('#rate-prompt').textContent.endsWith('2')")
            page.wait_for_selector("#rate-scores tbody tr")
            rows = [r.split("\t") for r in page.inner_text("#rate-scores tbody").strip().split("\n")]
            assert [r[0] for r in rows] == ["red", "blue"] and rows[0][4] == "2 / 0 / 0"
            page.screenshot(path=str(tmp_path / "rate-panel.png"), full_page=True)
            page.click("#rate-skip")
            page.wait_for_selector("#rate-done:not([hidden])")
            browser.close()
    finally:
        stop()
    assert store.scores("browser", n_boot=10).n_votes == 2
