"""Request limits (SPEC §13.2): per client address on every route, per signed-in customer on theirs; counted by
the process-wide limiter (Redis in production, memory in the demo), refused with 429 and Retry-After.

`limit_per_ip` is installed on the whole app (main.py), so every router gets it, the admin's included. On a
route that resolves the signed-in customer (a dependency registered with `counts_the_address`), the address is
counted together with the customer, in one round trip to Redis instead of two (`limit_per_user`), or alone if the
customer cannot be resolved (`count_the_address`): every request is still counted against its address, first.
The price: a flood from one address with valid credentials is refused after the customer's indexed read (the
request's transaction is rolled back), where the address alone refused it before any query.
A request refused before any dependency ran (a body that is not JSON, a path no route serves) is counted by the
error handlers (`count_a_refusal_before_the_limits`).
`limited(name, per_minute=…)` adds a limit of its own to a router or route in one line, e.g.
`APIRouter(dependencies=[limited("admin", per_minute=120, caller=lambda r: r.cookies.get(STAFF_COOKIE))])`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant

from app.kit.errors import RateLimited
from app.runtime_settings import service as runtime_settings
from app.runtime_settings.service import RuntimeValues

WINDOW_SECONDS = 60
# Machines, not people: health checks and metrics scrapes, and providers' and panels' webhooks (which retry
# what we refuse, and are authenticated by their signatures).
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/metrics", "/api/payments/webhook/", "/api/panels/webhook/")


async def enforce(request: Request, key: str, limit: int, *, window: int = WINDOW_SECONDS) -> None:
    """Count one hit on `key`; RateLimited (429, Retry-After) once more than `limit` fell in the window."""
    await _enforce_all(request, [(key, limit)], window)


async def _enforce_all(request: Request, limits: list[tuple[str, int]], window: int = WINDOW_SECONDS) -> None:
    decision = await request.app.state.resources.rate_limiter.hit_all(limits, window)
    if not decision.allowed:
        raise RateLimited("Too many requests; wait a little and try again.", retry_after=decision.retry_after)


async def _limits(request: Request) -> RuntimeValues:
    # Staff change the limits in /admin/settings; the app's refresher keeps them (no query per request).
    return runtime_settings.snapshot(request.app.state.resources.sessionmaker, request.app.state.settings)


def _address(request: Request) -> str:
    # Behind a proxy, uvicorn has put the forwarded address here, and only for trusted proxies (cli.serve).
    return request.client.host if request.client else "unknown"


def _address_key(request: Request) -> str:
    return f"req:ip:{_address(request)}"


_COUNTING_THE_ADDRESS: set[Callable[..., Any]] = set()


def counts_the_address(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a dependency that resolves the customer and then calls `limit_per_user` (or, when it fails,
    `count_the_address`): a route depending on it has its address counted there, not in `limit_per_ip`."""
    _COUNTING_THE_ADDRESS.add(dependency)
    return dependency


def _address_counted_later(route: Any) -> bool:
    """Whether the route depends on a `counts_the_address` dependency; found once per route and kept on it
    (routes are not hashable, and an id could be reused by another app's route in the tests)."""
    known = getattr(route, "_address_counted_later", None)
    if known is None:

        def depends_on_one(dependant: Dependant) -> bool:
            return dependant.call in _COUNTING_THE_ADDRESS or any(map(depends_on_one, dependant.dependencies))

        dependant = getattr(route, "dependant", None)
        known = dependant is not None and depends_on_one(dependant)
        if route is not None:
            route._address_counted_later = known
    return known


async def limit_per_ip(request: Request) -> None:
    """The app-wide limit per client address."""
    request.state.limits_ran = True
    if request.url.path.startswith(EXEMPT_PREFIXES):
        return
    if _address_counted_later(request.scope.get("route")):
        request.state.address_not_counted = True
        return
    await _count_the_address_alone(request)


async def count_a_refusal_before_the_limits(request: Request) -> None:
    """For the error handlers: a request refused before any dependency ran is counted against its address here,
    else a flood of them would never be limited — a body that is not JSON (FastAPI parses it before the
    dependencies, the app-wide limit included), a path or method no route serves (no route, no dependencies).
    RateLimited once the address is over its limit; nothing when the limits already ran for this request."""
    if getattr(request.state, "limits_ran", False) or request.url.path.startswith(EXEMPT_PREFIXES):
        return
    request.state.limits_ran = True
    await _count_the_address_alone(request)


async def _count_the_address_alone(request: Request) -> None:
    await enforce(request, _address_key(request), (await _limits(request)).rate_limit_per_ip_per_minute)


def _address_left_here(request: Request, limits: RuntimeValues) -> list[tuple[str, int]]:
    """The address's hit that `limit_per_ip` left to the customer's resolution, taken once (empty after that,
    and on routes where `limit_per_ip` counted it itself)."""
    if not getattr(request.state, "address_not_counted", False):
        return []
    request.state.address_not_counted = False
    return [(_address_key(request), limits.rate_limit_per_ip_per_minute)]


async def count_the_address(request: Request) -> None:
    """The address's hit left to the customer's resolution, when there is no customer to count it with (no or
    bad credentials, a blocked customer)."""
    if counted := _address_left_here(request, await _limits(request)):
        await _enforce_all(request, counted)


async def limit_per_user(request: Request, user_id: int) -> None:
    """The limit per signed-in customer, applied where the customer is resolved (app.auth.dependencies); with the
    address's hit, first, when `limit_per_ip` left it here."""
    limits = await _limits(request)
    customer = (f"req:user:{user_id}", limits.rate_limit_per_user_per_minute)
    await _enforce_all(request, [*_address_left_here(request, limits), customer])


def limited(name: str, *, per_minute: int, caller: Callable[[Request], str | None] | None = None) -> Any:
    """A dependency limiting a router or route to `per_minute` requests per caller: whom `caller(request)` names
    (e.g. a staff session cookie; hashed, so the key holds no secret), else the client address."""

    async def limit(request: Request) -> None:
        who = caller(request) if caller is not None else None
        key = "c:" + hashlib.sha256(who.encode()).hexdigest()[:32] if who else "ip:" + _address(request)
        await enforce(request, f"req:{name}:{key}", per_minute)

    return Depends(limit)
