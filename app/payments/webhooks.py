"""Receiving provider notifications (SPEC §5.2): verify with the provider's adapter (over the raw body), then
apply every update in one transaction, and answer the provider's question about an order (Telegram's
pre-checkout query) from our own records. What goes wrong is answered so that providers do the right thing:
forged or malformed → 4xx (do not retry, nothing changed); an unknown payment → 404; our own failure or the
provider's API being unreachable during a re-fetch → 5xx, so the provider delivers again later."""

from __future__ import annotations

import logging

from app.db import transaction
from app.kit.metrics import PAYMENTS
from app.payments.providers.base import IncomingWebhook, WebhookResult
from app.payments.service import Outcome, apply_update, precheck
from app.resources import Resources

log = logging.getLogger(__name__)


async def receive(
    resources: Resources, provider_name: str, webhook: IncomingWebhook
) -> tuple[WebhookResult, list[Outcome]]:
    provider = resources.payments.get(provider_name)
    result = await provider.parse_webhook(webhook)
    return result, await apply_result(resources, provider_name, result)


async def apply_result(resources: Resources, provider_name: str, result: WebhookResult) -> list[Outcome]:
    """Apply a verified notification's updates in one transaction and answer its question (the bot hands
    Telegram's payment updates straight here)."""
    outcomes: list[Outcome] = []
    async with transaction(resources.sessionmaker) as session:
        for update in result.updates:
            outcomes.append(await apply_update(session, provider_name, update, resources.settings))
        question = result.question
        refusal = await precheck(session, provider_name, question.order_id, question.amount) if question else None
    if question is not None:
        await question.answer(refusal)
    for update, outcome in zip(result.updates, outcomes, strict=True):
        if outcome in (Outcome.APPLIED, Outcome.MISMATCH):
            PAYMENTS.labels(provider_name, update.state.value if outcome == Outcome.APPLIED else "mismatch").inc()
        log.info("payment webhook %s %s %s: %s", provider_name, update.kind, update.event_id, outcome.value)
    return outcomes
