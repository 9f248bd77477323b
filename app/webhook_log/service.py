"""Recording a webhook delivery and its verdict. A refusal is recorded in its own short transaction (`record`):
the request's work is rolled back, and the record of the refusal must stay; an accepted delivery may be added
to the transaction that applies it (`add`). Recording never
fails the webhook: a database hiccup here is logged and the delivery is answered as it would have been."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.models import WebhookReceipt

log = logging.getLogger(__name__)

ACCEPTED, REFUSED, FAILED = "accepted", "refused", "failed"


def verdict_of(status_code: int) -> str:
    if status_code < 400:
        return ACCEPTED
    return FAILED if status_code >= 500 else REFUSED


def _receipt(source: str, sender: str, status_code: int, reason: str | None) -> WebhookReceipt:
    return WebhookReceipt(
        source=source,
        sender=sender[:64],
        verdict=verdict_of(status_code),
        status_code=status_code,
        reason=(reason or None) and reason[:2000],
    )


def add(session: AsyncSession, *, source: str, sender: str, status_code: int, reason: str | None = None) -> None:
    """Record an accepted delivery in the transaction that applies it."""
    session.add(_receipt(source, sender, status_code, reason))


async def record(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    source: str,
    sender: str,
    status_code: int,
    reason: str | None = None,
) -> None:
    try:
        async with transaction(sessionmaker) as session:
            session.add(_receipt(source, sender, status_code, reason))
    except Exception:  # the delivery's answer matters more than its record
        log.warning("could not record a %s webhook from %s", source, sender, exc_info=True)
