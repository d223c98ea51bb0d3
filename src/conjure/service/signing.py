"""The server secret and signed, expiring URLs for job files (HMAC-SHA256 over the key and expiry)."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from conjure.config import Settings

# Known to everyone, so only acceptable where nothing is exposed: development on loopback.
DEVELOPMENT_SECRET = "conjure-development-secret-do-not-use-in-production"
MIN_SECRET_CHARS = 32


def server_secret(settings: Settings) -> bytes:
    """The HMAC key; outside development a real secret of at least 32 characters is required."""
    if settings.secret:
        if len(settings.secret) < MIN_SECRET_CHARS:
            raise ValueError(f"CONJURE_SECRET has {len(settings.secret)} characters; use at least "
                             f"{MIN_SECRET_CHARS} random ones, e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'`")
        return settings.secret.encode()
    if settings.env != "development":
        raise ValueError(f"CONJURE_ENV is '{settings.env}' but CONJURE_SECRET is unset: the development "
                         "secret is public. Set CONJURE_SECRET to at least 32 random characters")
    return DEVELOPMENT_SECRET.encode()


def _signature(secret: bytes, key: str, expires: int) -> str:
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(secret: bytes, key: str, ttl_s: int, now: float | None = None) -> str:
    """`/v1/files/<key>?expires=...&signature=...`, valid for ttl_s seconds."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"/v1/files/{quote(key)}?expires={expires}&signature={_signature(secret, key, expires)}"


def verify(secret: bytes, key: str, expires: int, signature: str, now: float | None = None) -> str | None:
    """None if the URL is valid, else why not (expired, or a signature that does not match)."""
    if not signature.isascii() or not hmac.compare_digest(_signature(secret, key, expires), signature):
        return "the signature does not match this file: request a new URL from the job"
    if expires < (time.time() if now is None else now):
        return "this URL has expired: fetch the job again for a fresh URL"
    return None
