"""One place that turns domain errors into responses: JSON for the API, a page or fragment for people."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.inbound import loggable_path
from app.kit.errors import AppError, RateLimited, ShellRequired
from app.throttle import count_a_refusal_before_the_limits

# A store the request needs (the database, Redis) cannot be reached: connection refused or reset (OSError, which
# asyncpg raises unwrapped), a dropped or timed-out connection, an exhausted pool. Not the request's fault, and
# nothing a traceback per request would help with.
UNREACHABLE = (
    OSError,
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
    RedisConnectionError,
    RedisTimeoutError,
)
UNREACHABLE_RETRY_AFTER = 30

log = logging.getLogger(__name__)


def wants_json(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path in {"/healthz", "/readyz"}:
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_response(request: Request, status: int, code: str, message: str, **extra: object) -> Response:
    headers = {"retry-after": str(extra["retry_after"])} if "retry_after" in extra else None
    if wants_json(request):
        return JSONResponse({"error": {"code": code, "message": message, **extra}}, status, headers=headers)
    templates = request.app.state.templates
    context = {"status": status, "code": code, "message": message}
    block = "content" if request.headers.get("hx-request") == "true" else None
    return templates.response(request, "error.html", context, block=block, status_code=status, headers=headers)


def app_error_response(request: Request, exc: AppError) -> Response:
    extra = {"retry_after": exc.retry_after} if isinstance(exc, RateLimited) else {}
    return error_response(request, exc.status_code, exc.code, exc.message, **extra)


async def _over_the_limit(request: Request) -> Response | None:
    """429 instead of the error when the request, refused before the limits ran, is one too many from its
    address."""
    try:
        await count_a_refusal_before_the_limits(request)
    except RateLimited as limited:
        return app_error_response(request, limited)
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ShellRequired)
    async def _shell(request: Request, exc: ShellRequired) -> Response:
        src = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return request.app.state.templates.response(request, "shell.html", {"src": src})

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return app_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if (refused := await _over_the_limit(request)) is not None:
            return refused
        problems = [
            {"field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]), "message": err["msg"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(request, 422, "validation_failed", summary, fields=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if (refused := await _over_the_limit(request)) is not None:
            return refused
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail))

    async def _unreachable(request: Request, exc: Exception) -> Response:
        log.warning(
            "%s %s: a store is unreachable: %s: %s",
            request.method,
            loggable_path(request.scope),
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        message = "The service is briefly unavailable; please try again in a minute."
        return error_response(request, 503, "service_unavailable", message, retry_after=UNREACHABLE_RETRY_AFTER)

    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, _unreachable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, loggable_path(request.scope))
        return error_response(request, 500, "internal_error", "Internal error")
