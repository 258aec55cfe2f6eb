"""Bearer-token check for the `/v1` routes and the dashboard's API.

`Authorization: Bearer T` on any request; for GET (and HEAD) also `?token=T`, because a browser's
EventSource and <img> requests cannot send headers. Tokens are compared in constant time. No token
configured means the routes are open (the CLI warns when such a service listens beyond loopback).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request


def token_matches(given: str | None, token: str) -> bool:
    """True when `given` equals `token` (constant-time, any characters)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, None without one."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def make_require_token(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that raises 401 (with `WWW-Authenticate: Bearer`) unless the request carries `token`."""

    async def require_token(request: Request) -> None:
        """Accept `Authorization: Bearer T`, or `?token=T` on GET/HEAD; otherwise 401."""
        if token is None:
            return
        if token_matches(bearer(request), token):
            return
        if request.method in ("GET", "HEAD") and token_matches(request.query_params.get("token"), token):
            return
        missing = bearer(request) is None and "token" not in request.query_params
        raise HTTPException(401, "missing bearer token" if missing else "wrong token",
                            headers={"WWW-Authenticate": "Bearer"})

    return require_token
