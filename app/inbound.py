"""What every route may receive from outside, bounded before it reaches a query or memory: row ids that fit a
BIGINT, bodies read up to a cap, and paths that may be logged without the secret some of them carry."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request
from starlette.types import Scope

from app.kit.errors import AppError
from app.kit.logging import redact_path

# BIGINT's ceiling: a larger id can match no row, and the databases refuse it as a parameter (a 500 before).
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A row id (1 … 2^63-1)")]

# Webhook bodies are read before their sender is authenticated; real notifications are a few kilobytes.
MAX_WEBHOOK_BODY_BYTES = 1024 * 1024


class PayloadTooLarge(AppError):
    """The request body is too large."""

    status_code = 413
    code = "payload_too_large"


async def read_capped_body(request: Request, max_bytes: int = MAX_WEBHOOK_BODY_BYTES) -> bytes:
    """The body, refused as soon as it is known to exceed `max_bytes`: by its Content-Length before a byte is
    read, else (chunked) while streaming, so an unauthenticated sender cannot make us buffer gigabytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body exceeds {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the body exceeds {max_bytes} bytes")
    return bytes(body)


def loggable_path(scope: Scope) -> str:
    """The request's path fit for a log line: the route's template when one matched (`/sub/{token}`), else the
    raw path with any secret-bearing tail replaced."""
    template = getattr(scope.get("route"), "path", None)
    return template or redact_path(scope.get("path", ""))
