"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from app.kit.metrics import render_latest

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
    return JSONResponse(body, status_code=503 if down else 200)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    payload, content_type = render_latest()
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
