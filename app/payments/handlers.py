"""Outbox handlers of the payments domain (imported by the outbox dispatcher to register them)."""

from __future__ import annotations

from typing import Any

from app.kit.errors import AppError
from app.outbox import service as outbox
from app.payments import operations  # noqa: F401  (registers the refund handler)
from app.payments.providers.base import IncomingWebhook, WebhookRejected
from app.payments.topics import DEMO_DELIVER_TOPIC
from app.payments.webhooks import receive


@outbox.handler(DEMO_DELIVER_TOPIC, max_attempts=50)
async def deliver_demo_notification(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """The demo provider's webhook delivery: the same verification and state machine as a real provider's,
    retried by the outbox as a provider retries."""
    webhook = IncomingWebhook(payload["body"].encode(), payload["headers"], "127.0.0.1")
    try:
        await receive(ctx["resources"], "demo", webhook)
    except (WebhookRejected, AppError) as exc:
        # A real provider would get a 4xx and give up on this delivery.
        raise outbox.PermanentFailure(str(exc)) from exc
