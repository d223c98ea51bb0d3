"""API keys (stored as SHA-256 hashes, shown once), users and roles, per-key rate limits.

Keys are 256-bit random tokens, so a fast hash is the right store (as for GitHub tokens): there is
nothing to brute-force. A user is the `owner` name that a key belongs to; every job and file is scoped
to it. Without `require_auth`, a request with no key is the local admin (the server then binds loopback only).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

from sqlalchemy import Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from conjure.db import Base

ROLES = ("admin", "user")
KEY_PREFIX = "cjk_"
LOCAL_USER = "local"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))          # first characters, to recognise a key in lists
    owner: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_limit_per_min: Mapped[int] = mapped_column(Integer)
    daily_quota: Mapped[int] = mapped_column(Integer)       # images per UTC day


@dataclass(frozen=True)
class User:
    name: str
    role: str
    key_id: str | None = None          # None = keyless local mode
    rate_limit_per_min: int = 0        # 0 = unlimited
    daily_quota: int = 0               # 0 = unlimited

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


LOCAL_ADMIN = User(LOCAL_USER, "admin")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(s: Session, owner: str, role: str, rate_limit_per_min: int, daily_quota: int) -> tuple[str, ApiKey]:
    """A new key for `owner`; returns the plain key (shown once, never stored) and its record."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got '{role}'")
    if not owner or len(owner) > 64 or not owner.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError("the user name must be 1-64 letters, digits, '.', '-' or '_'")
    if rate_limit_per_min < 0 or daily_quota < 0:
        raise ValueError("rate limit and quota must be 0 (unlimited) or positive")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=uuid.uuid4().hex, key_hash=hash_key(plain), prefix=plain[:12], owner=owner, role=role,
                 created_at=time.time(), revoked_at=None, rate_limit_per_min=rate_limit_per_min,
                 daily_quota=daily_quota)
    s.add(row)
    return plain, row


def list_keys(s: Session) -> list[ApiKey]:
    return list(s.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke(s: Session, target: str) -> list[ApiKey]:
    """Revoke every live key of the user named `target`, or else the one key whose id or prefix it is."""
    rows = s.scalars(select(ApiKey).where(ApiKey.owner == target, ApiKey.revoked_at.is_(None))).all()
    if not rows:
        rows = s.scalars(select(ApiKey).where((ApiKey.id == target) | (ApiKey.prefix == target))).all()
        if len(rows) != 1:
            raise ValueError(f"no live key belongs to a user '{target}' and no single key has that id or prefix: "
                             "see `conjure keys list`")
    now = time.time()
    for row in rows:
        if row.revoked_at is None:
            row.revoked_at = now
    return list(rows)


def authenticate(s: Session, key: str) -> User | None:
    """The user a live key belongs to, or None (unknown or revoked)."""
    row = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        return None
    return User(row.owner, row.role, row.id, row.rate_limit_per_min, row.daily_quota)


class RateLimiter:
    """A sliding one-minute window per key, in this server process."""

    def __init__(self, window_s: float = 60.0):
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, limit: int, now: float | None = None) -> float:
        """Record a request; 0 if allowed, else the seconds until one more would be."""
        if limit <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= limit:
                return max(hits[0] + self.window_s - now, 0.001)
            hits.append(now)
            return 0.0
