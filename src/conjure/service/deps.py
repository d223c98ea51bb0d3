"""Dependencies as `Annotated` aliases: the service context, a database session, the current user (API key
or keyless local mode), admin-only access and the per-key rate limit."""

from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from conjure.service.auth import LOCAL_ADMIN, User, authenticate
from conjure.service.core import ServiceContext, ServiceError

_bearer = HTTPBearer(auto_error=False, description="An API key from `conjure keys create`.")


def get_context(request: Request) -> ServiceContext:
    return request.app.state.ctx


Context = Annotated[ServiceContext, Depends(get_context)]


def get_session(ctx: Context) -> Iterator[Session]:
    with ctx.sessions() as s:
        yield s


DbSession = Annotated[Session, Depends(get_session)]


def get_current_user(ctx: Context, s: DbSession,
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> User:
    """The key's user; with no valid key, the local admin where auth is off (loopback only), else 401."""
    if creds is None:
        if ctx.settings.require_auth:
            raise ServiceError(401, "this server needs an API key: send 'Authorization: Bearer <key>' "
                               "(an admin creates one with `conjure keys create`)",
                               {"WWW-Authenticate": "Bearer"}, code="invalid_api_key")
        return LOCAL_ADMIN
    user = authenticate(s, creds.credentials)
    if user is None and not ctx.settings.require_auth:
        return LOCAL_ADMIN   # keyless loopback mode: clients that must send some key (openai) still work
    if user is None:
        raise ServiceError(401, "the API key is unknown or revoked: ask an admin for a new one",
                           {"WWW-Authenticate": "Bearer"}, code="invalid_api_key")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise ServiceError(403, "this needs an admin key", code="forbidden")
    return user


AdminUser = Annotated[User, Depends(require_admin)]


def rate_limited(ctx: Context, user: CurrentUser) -> User:
    """The current user, after counting this request against the key's per-minute limit (429 past it)."""
    if user.key_id is not None:
        wait = ctx.limiter.check(user.key_id, user.rate_limit_per_min)
        if wait:
            raise ServiceError(429, f"rate limit of {user.rate_limit_per_min} requests a minute reached: "
                               f"retry in {wait:.0f} s", {"Retry-After": str(max(int(wait + 0.999), 1))},
                               code="rate_limit_exceeded")
    return user


RateLimitedUser = Annotated[User, Depends(rate_limited)]
