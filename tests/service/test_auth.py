"""Auth through a real server with CONJURE_REQUIRE_AUTH=true: keys made with the real `conjure keys` CLI and
stored hashed, 401 without a live key, per-user isolation of jobs and files, admin access, the per-key rate
limit and the daily quota (429 with Retry-After), and keyless mode only where auth is not required."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import openai
import pytest
from typer.testing import CliRunner

from conjure.cli import app as cli_app
from conjure.config import Settings, get_settings
from conjure.service.auth import LOCAL_ADMIN
from conjure.service.core import ServiceError

from .conftest import FAST, make_settings, start_live_server


def keys_cli(home, *args: str):
    """`conjure keys ...` in this process, with the server's home and auth required."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONJURE_HOME", str(home))
        mp.setenv("CONJURE_REQUIRE_AUTH", "true")
        mp.delenv("CONJURE_DATABASE_URL", raising=False)
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli_app, ["keys", *args])
        finally:
            get_settings.cache_clear()


def new_key(home, *args: str) -> str:
    result = keys_cli(home, "create", *args)
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("cjk_") and "\n" not in key and "cannot be shown again" in result.stderr
    return key


@pytest.fixture(scope="module")
def secured(tmp_path_factory, tiny_model_dir):
    home = tmp_path_factory.mktemp("auth-home")
    settings = make_settings(home, tiny_model_dir, require_auth=True)
    live, _, stop = start_live_server(settings)
    keys = {"admin": new_key(home, "root", "--role", "admin", "--rate", "0", "--quota", "0"),
            "alice": new_key(home, "alice", "--rate", "0", "--quota", "0"),
            "bob": new_key(home, "bob", "--rate", "0", "--quota", "0"),
            "carol": new_key(home, "carol", "--rate", "3", "--quota", "0"),
            "dave": new_key(home, "dave", "--rate", "0", "--quota", "2")}
    yield live, keys
    stop()


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_listed_by_prefix_and_stored_hashed(secured):
    live, keys = secured
    listed = json.loads(keys_cli(live.settings.home, "list", "--json").stdout)
    users = {k["user"]: k for k in listed}
    assert users["root"]["role"] == "admin" and users["alice"]["role"] == "user"
    assert users["carol"]["rate_limit_per_min"] == 3 and users["dave"]["daily_quota"] == 2
    assert all(keys[name] not in json.dumps(listed) for name in ("admin", "alice"))
    assert keys["alice"].startswith(users["alice"]["prefix"])
    with sqlite3.connect(live.settings.home / "conjure.db") as db:
        hashes = {owner: h for owner, h in db.execute("select owner, key_hash from api_keys")}
    assert hashes["alice"] == hashlib.sha256(keys["alice"].encode()).hexdigest()
    raw = b"".join(p.read_bytes() for p in live.settings.home.glob("conjure.db*"))   # the file and its WAL
    for key in keys.values():
        assert key.encode() not in raw and key[len("cjk_"):].encode() not in raw
    assert keys_cli(live.settings.home, "create", "x", "--role", "owner").exit_code == 2


def test_requests_without_a_live_key_are_401(secured):
    live, keys = secured
    r = live.client.get("/v1/jobs")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "API key" in r.json()["detail"]
    assert live.client.get("/v1/jobs", headers=auth("cjk_" + "x" * 43)).status_code == 401
    r = live.client.post("/v1/images/generations", json={"prompt": "apple"}, headers=auth("wrong"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert live.client.get("/healthz").status_code == 200   # operations stay open for probes
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=live.url + "/v1", api_key="not-a-key", max_retries=0).models.list()
    models = openai.OpenAI(base_url=live.url + "/v1", api_key=keys["alice"], max_retries=0).models.list()
    assert models.data


def test_a_revoked_key_is_401_at_once(secured):
    live, _ = secured
    key = new_key(live.settings.home, "erin")
    assert live.client.get("/v1/jobs", headers=auth(key)).status_code == 200
    result = keys_cli(live.settings.home, "revoke", "erin")
    assert result.exit_code == 0 and "revoked" in result.stdout
    r = live.client.get("/v1/jobs", headers=auth(key))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert keys_cli(live.settings.home, "revoke", "nobody").exit_code == 2
    listed = json.loads(keys_cli(live.settings.home, "list", "--json").stdout)
    assert [k["revoked_at"] is not None for k in listed if k["user"] == "erin"] == [True]


def test_users_see_only_their_own_jobs_and_files(secured):
    live, keys = secured
    a, b, admin = auth(keys["alice"]), auth(keys["bob"]), auth(keys["admin"])
    r = live.client.post("/v1/jobs", json={"prompt": "red apple", **FAST}, headers={**a, "Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    job = live.wait_job(r.json()["id"], headers=a)
    assert job["status"] == "succeeded", job["error"]
    jid = job["id"]
    # bob: every way to reach alice's job answers as if it did not exist
    assert live.client.get(f"/v1/jobs/{jid}", headers=b).status_code == 404
    assert live.client.get(f"/v1/jobs/{jid}/events", headers=b).status_code == 404
    assert live.client.post(f"/v1/jobs/{jid}/cancel", headers=b).status_code == 404
    assert live.client.delete(f"/v1/jobs/{jid}", headers=b).status_code == 404
    assert jid not in [j["id"] for j in live.client.get("/v1/jobs", headers=b).json()["data"]]
    assert live.client.get("/v1/jobs", params={"all_users": True}, headers=b).status_code == 403
    # the same Idempotency-Key from bob is his own new job, not alice's
    mine = live.client.post("/v1/jobs", json={"prompt": "red apple", **FAST}, headers={**b, "Idempotency-Key": "k1"})
    assert mine.status_code == 201 and mine.json()["id"] != jid
    # files: the signed URL is the permission; without alice's job bob has no valid signature for her file
    url = job["outputs"][0]["url"]
    assert live.client.get(url).status_code == 200
    forged = url.split("?")[0] + "?expires=9999999999&signature=" + "0" * 64
    assert live.client.get(forged, headers=b).status_code == 403
    # an admin sees and lists everyone's jobs
    assert live.client.get(f"/v1/jobs/{jid}", headers=admin).status_code == 200
    every = live.client.get("/v1/jobs", params={"all_users": True, "limit": 100}, headers=admin).json()["data"]
    assert {jid, mine.json()["id"]} <= {j["id"] for j in every}
    # alice still owns hers: she deletes it (with its file), bob's stays
    assert live.client.delete(f"/v1/jobs/{jid}", headers=a).status_code == 204
    assert live.client.get(url).status_code == 404
    assert live.client.get(f"/v1/jobs/{mine.json()['id']}", headers=b).status_code == 200


def test_rate_limit_is_429_with_retry_after_per_key(secured):
    live, keys = secured
    c = auth(keys["carol"])
    made = [live.client.post("/v1/jobs", json={"prompt": f"cat {i}", **FAST}, headers=c) for i in range(3)]
    assert [r.status_code for r in made] == [201, 201, 201]
    r = live.client.post("/v1/jobs", json={"prompt": "cat 3", **FAST}, headers=c)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert "3 requests a minute" in r.json()["detail"]
    r = live.client.post("/v1/images/generations", json={"prompt": "cat"}, headers=c)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded" and r.headers["retry-after"]
    assert live.client.get(f"/v1/jobs/{made[0].json()['id']}", headers=c).status_code == 200   # reads: not limited
    other = live.client.post("/v1/jobs", json={"prompt": "dog", **FAST}, headers=auth(keys["alice"]))
    assert other.status_code == 201   # the limit is per key
    for r in made + [other]:
        key = keys["alice"] if r is other else keys["carol"]
        live.client.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=auth(key))


def test_daily_quota_is_429_insufficient_quota_as_openai_answers(secured):
    live, keys = secured
    d = auth(keys["dave"])
    first = live.client.post("/v1/jobs", json={"prompt": "moon", "n": 2, **FAST}, headers=d)
    assert first.status_code == 201
    r = live.client.post("/v1/jobs", json={"prompt": "sun", **FAST}, headers=d)   # 2 images in flight
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "daily quota of 2" in r.json()["detail"]
    assert live.wait_job(first.json()["id"], headers=d)["status"] == "succeeded"
    r = live.client.post("/v1/images/generations", json={"prompt": "sun"}, headers=d)   # 2 charged today
    body = r.json()["error"]
    assert r.status_code == 429 and body["type"] == body["code"] == "insufficient_quota"
    assert r.headers["x-should-retry"] == "false"   # the openai client would otherwise retry a quota error
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=keys["dave"], max_retries=2, timeout=30)
    with pytest.raises(openai.RateLimitError) as err:
        client.images.generate(prompt="sun")
    assert err.value.code == "insufficient_quota"
    assert live.client.post("/v1/jobs", json={"prompt": "sun", **FAST},
                            headers=auth(keys["alice"])).status_code == 201   # quota is per user


def test_keyless_mode_only_where_auth_is_not_required():
    from types import SimpleNamespace

    from fastapi.security import HTTPAuthorizationCredentials

    from conjure.service.app import is_loopback, serve
    from conjure.service.deps import get_current_user

    class NoKeys:
        def scalar(self, *_):
            return None   # no key matches

    creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials="anything")
    open_ctx = SimpleNamespace(settings=Settings(require_auth=False))
    assert get_current_user(open_ctx, NoKeys(), None) is LOCAL_ADMIN
    assert get_current_user(open_ctx, NoKeys(), creds) is LOCAL_ADMIN   # clients that must send a key (openai)
    closed_ctx = SimpleNamespace(settings=Settings(require_auth=True))
    for c in (None, creds):
        with pytest.raises(ServiceError) as err:
            get_current_user(closed_ctx, NoKeys(), c)
        assert err.value.status == 401
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    for host in ("0.0.0.0", "::", "192.168.1.5"):
        with pytest.raises(ValueError, match="CONJURE_REQUIRE_AUTH"):
            serve(Settings(require_auth=False), host, 8000, 0)

