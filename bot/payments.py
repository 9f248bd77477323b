"""Telegram Stars money events, handed to the payments service exactly as the web webhook route would: the
pre-checkout query is answered from our own order (no provider or panel is called, so well under Telegram's 10 s),
and successful / refunded payments go through the idempotent state machine (deduplicated by the charge id). An
error propagates: in webhook mode Telegram then delivers the update again; in long polling the reconciliation job
finds the charge in the bot's Star transactions."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import F, Router
from aiogram.types import Message, PreCheckoutQuery, Update

from app.payments.webhooks import apply_result
from app.resources import Resources

log = logging.getLogger(__name__)

PROVIDER = "stars"


def raw_update(update: Update) -> dict[str, Any]:
    """The Update as Telegram sent it (aliases such as "from" restored)."""
    return update.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _apply(resources: Resources, update: Update) -> None:
    provider = resources.payments.get(PROVIDER)
    await apply_result(resources, PROVIDER, provider.read_update(raw_update(update)))


async def pre_checkout(query: PreCheckoutQuery, event_update: Update, resources: Resources) -> None:
    if PROVIDER not in resources.payments:
        log.warning("pre-checkout query %s refused: Telegram Stars are not enabled (STARS_ENABLED)", query.id)
        await query.answer(ok=False, error_message="Payments in Stars are not available right now.")
        return
    await _apply(resources, event_update)


async def payment_message(message: Message, event_update: Update, resources: Resources) -> None:
    if PROVIDER not in resources.payments:
        log.error("a Stars payment arrived but STARS_ENABLED is off: update %s", event_update.update_id)
        raise RuntimeError("Telegram Stars payments are not enabled")
    await _apply(resources, event_update)


def build_router() -> Router:
    """A fresh router each time: aiogram attaches a router to one dispatcher only."""
    router = Router(name="payments")
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(payment_message, F.successful_payment | F.refunded_payment)
    return router
