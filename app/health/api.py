"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from app.health.gauges import BusinessGauges
from app.kit.metrics import render_latest

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

READINESS_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The database and (when configured) Redis answer; 503 names whatever is down."""
    resources = request.app.state.resources
    checks: dict[str, str] = {"database": await _check(_ping_db(resources))}
    if resources.redis is not None:
        checks["redis"] = await _check(resources.redis.ping())
    down = sorted(name for name, state in checks.items() if state != "ok")
    body: dict[str, object] = {"status": "ok" if not down else "unavailable", "checks": checks}
    if down:
        body["down"] = down
        # WARNING, not ERROR: a dependency restarting is routine, and the orchestrator acts on the 503 itself.
        log.warning("not ready: %s", ", ".join(f"{name} {checks[name]}" for name in down), extra={"down": down})
    return JSONResponse(body, status_code=503 if down else 200)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """This process's (or with several workers, all workers') metrics and the gauges read from the database.
    Not for the internet: the proxy in front (Caddyfile) answers /metrics with 404."""
    state = request.app.state
    if getattr(state, "business_gauges", None) is None:
        state.business_gauges = BusinessGauges(state.resources.sessionmaker)
    try:
        families = await state.business_gauges.families()
    except Exception as exc:  # a database hiccup must not hide the process metrics; the gauges are simply absent
        log.warning("business gauges unavailable for this scrape: %s", type(exc).__name__)
        families = []
    payload, content_type = render_latest(families)
    return Response(payload, media_type=content_type)


async def _ping_db(resources) -> None:
    async with resources.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check(awaitable) -> str:
    try:
        await asyncio.wait_for(awaitable, READINESS_TIMEOUT)
    except Exception as exc:  # any failure means "not ready"; the reason goes to the body
        return f"down: {type(exc).__name__}"
    return "ok"
