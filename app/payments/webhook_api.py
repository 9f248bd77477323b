"""`POST /api/payments/webhook/{provider}`: every provider's notifications, verified over the raw body."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.inbound import read_capped_body
from app.kit.errors import ExternalServiceError
from app.payments.providers.base import IncomingWebhook, ProviderUnavailable, WebhookRejected
from app.payments.webhooks import receive
from app.resources import Resources
from app.webhook_log import service as webhook_log

log = logging.getLogger(__name__)

router = APIRouter(tags=["payments"])


def _error(status_code: int, code: str, message: str) -> JSONResponse:
    # The app's usual error shape (app/error_handlers.py).
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status_code)


@router.post("/api/payments/webhook/{provider}", responses={400: {}, 401: {}, 403: {}, 404: {}, 413: {}, 503: {}})
async def payment_webhook(provider: str, request: Request) -> Response:
    """A provider's notification. 200 once applied (or already applied); 4xx when refused, with nothing
    changed; 5xx when we could not finish, so the provider delivers it again."""
    resources: Resources = request.app.state.resources
    webhook = IncomingWebhook(
        body=await read_capped_body(request),
        headers=dict(request.headers),
        peer_ip=request.client.host if request.client else None,
    )
    sender = provider if provider in resources.payments else "unknown"  # not a string of the caller's choosing
    try:
        result, outcomes = await receive(resources, provider, webhook)
    except WebhookRejected as exc:
        log.warning("payment webhook %s rejected: %s", provider, exc)
        await webhook_log.record(
            resources.sessionmaker, source="payment", sender=sender, status_code=exc.status_code, reason=str(exc)
        )
        return _error(exc.status_code, "webhook_rejected", str(exc))
    except (ProviderUnavailable, ExternalServiceError) as exc:
        log.warning("payment webhook %s not finished: %s", provider, exc)
        await webhook_log.record(
            resources.sessionmaker, source="payment", sender=sender, status_code=503, reason=str(exc)
        )
        return _error(503, "provider_unavailable", f"could not confirm with {provider}: {exc}")
    reason = ", ".join(outcome.value for outcome in outcomes)
    await webhook_log.record(resources.sessionmaker, source="payment", sender=sender, status_code=200, reason=reason)
    body: dict[str, Any] = result.response_body or {"ok": True, "outcomes": [outcome.value for outcome in outcomes]}
    return JSONResponse(body)
