"""Pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): request id and access log, security
headers, metrics."""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.inbound import loggable_path
from app.kit.logging import log_context, redact_path
from app.kit.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("vpnshop.http")
access_log = logging.getLogger("vpnshop.access")

# A request id from the proxy (or a client) is kept when it looks like one; anything else gets a fresh one,
# so a header cannot inject text into the logs.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestContextMiddleware:
    """Gives every request an id (X-Request-ID, kept from the proxy when sane), puts it on every log line
    written while the request is handled and in the jobs it enqueues, answers it in the response, and with
    ACCESS_LOG writes one access line (method, path with secrets masked, status, duration, request id)."""

    def __init__(self, app: ASGIApp, *, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value for name, value in scope["headers"] if name == b"x-request-id"), b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if self.access_log:
                    access_log.info(
                        "%s %s %d",
                        scope["method"],
                        redact_path(scope["path"]),
                        status,
                        extra={
                            "method": scope["method"],
                            "path": redact_path(scope["path"]),
                            "status": status,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        },
                    )


# Telegram's web clients embed the Mini App in an iframe; nobody else may frame it.
TELEGRAM_FRAME_ANCESTORS = "'self' https://web.telegram.org https://webk.telegram.org https://webz.telegram.org"


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}' https://telegram.org",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            # The Telegram Login Widget on the browser sign-in page is an iframe from oauth.telegram.org.
            "frame-src https://oauth.telegram.org",
            "form-action 'self' https:",
            "base-uri 'none'",
            "object-src 'none'",
            f"frame-ancestors {TELEGRAM_FRAME_ANCESTORS}",
        ]
    )


# Built once: only the nonce changes from one response to the next.
_CSP_BEFORE_NONCE, _CSP_AFTER_NONCE = (part.encode() for part in content_security_policy("\0").split("\0"))
_FIXED_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.fixed_headers = _FIXED_SECURITY_HEADERS + ([_HSTS] if https else [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                csp = _CSP_BEFORE_NONCE + nonce.encode() + _CSP_AFTER_NONCE
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"content-security-policy", csp),
                    *self.fixed_headers,
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class MetricsMiddleware:
    """Counts and times requests by route template (not raw path, so ids do not explode the labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            counted, timed = _metrics_of(scope["method"], label, status)
            counted.inc()
            timed.observe(elapsed)
            if status >= 500:
                log.error("%s %s -> %d in %.1f ms", scope["method"], loggable_path(scope), status, elapsed * 1000)


@functools.cache
def _metrics_of(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one method, route template and status. Kept, because looking
    a labelled child up costs more than the count itself; the keys are as few as the routes and statuses."""
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_LATENCY.labels(method, route)
