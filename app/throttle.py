"""Request limits (SPEC §13.2): per client address on every route, per signed-in customer on theirs; counted by
the process-wide limiter (Redis in production, memory in the demo), refused with 429 and Retry-After.

`limit_per_ip` is installed on the whole app (main.py), so every router gets it, the admin's included.
`limited(name, per_minute=…)` adds a limit of its own to a router or route in one line, e.g.
`APIRouter(dependencies=[limited("admin", per_minute=120, caller=lambda r: r.cookies.get(STAFF_COOKIE))])`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from app.kit.errors import RateLimited
from app.runtime_settings import service as runtime_settings
from app.runtime_settings.service import RuntimeValues

WINDOW_SECONDS = 60
# Machines, not people: health checks and metrics scrapes, and providers' and panels' webhooks (which retry
# what we refuse, and are authenticated by their signatures).
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/metrics", "/api/payments/webhook/", "/api/panels/webhook/")


async def enforce(request: Request, key: str, limit: int, *, window: int = WINDOW_SECONDS) -> None:
    """Count one hit on `key`; RateLimited (429, Retry-After) once more than `limit` fell in the window."""
    decision = await request.app.state.resources.rate_limiter.hit(key, limit, window)
    if not decision.allowed:
        raise RateLimited("Too many requests; wait a little and try again.", retry_after=decision.retry_after)


async def _limits(request: Request) -> RuntimeValues:
    # Staff change the limits in /admin/settings; the app's refresher keeps them (no query per request).
    return runtime_settings.snapshot(request.app.state.resources.sessionmaker, request.app.state.settings)


def _address(request: Request) -> str:
    # Behind a proxy, uvicorn has put the forwarded address here, and only for trusted proxies (cli.serve).
    return request.client.host if request.client else "unknown"


async def limit_per_ip(request: Request) -> None:
    """The app-wide limit per client address."""
    if request.url.path.startswith(EXEMPT_PREFIXES):
        return
    per_minute = (await _limits(request)).rate_limit_per_ip_per_minute
    await enforce(request, f"req:ip:{_address(request)}", per_minute)


async def limit_per_user(request: Request, user_id: int) -> None:
    """The limit per signed-in customer, applied where the customer is resolved (app.auth.dependencies)."""
    await enforce(request, f"req:user:{user_id}", (await _limits(request)).rate_limit_per_user_per_minute)


def limited(name: str, *, per_minute: int, caller: Callable[[Request], str | None] | None = None) -> Any:
    """A dependency limiting a router or route to `per_minute` requests per caller: whom `caller(request)` names
    (e.g. a staff session cookie; hashed, so the key holds no secret), else the client address."""

    async def limit(request: Request) -> None:
        who = caller(request) if caller is not None else None
        key = "c:" + hashlib.sha256(who.encode()).hexdigest()[:32] if who else "ip:" + _address(request)
        await enforce(request, f"req:{name}:{key}", per_minute)

    return Depends(limit)
