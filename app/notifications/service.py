"""Messages to customers and alerts to staff, queued in the caller's transaction through the outbox, so they go
out exactly when (and only if) the change they report commits. The dedupe key makes each one happen once even
if the code that queues it runs twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox import service as outbox

USER_TOPIC = "notify.user"
STAFF_TOPIC = "notify.staff"


async def notify_user(session: AsyncSession, user_id: int, kind: str, data: dict[str, Any], *, dedupe_key: str) -> None:
    """Queue a message of `kind` (payment_succeeded, payment_failed, referral_bonus…) to the user."""
    payload = {"user_id": user_id, "kind": kind, "data": data, "dedupe_key": dedupe_key}
    await outbox.add(session, USER_TOPIC, payload, dedupe_key=f"{USER_TOPIC}:{dedupe_key}")


async def alert_staff(session: AsyncSession, kind: str, data: dict[str, Any], *, dedupe_key: str) -> None:
    """Queue an alert (a payment mismatch, a provider refusing refunds…) for the staff on duty."""
    payload = {"kind": kind, "data": data, "dedupe_key": dedupe_key}
    await outbox.add(session, STAFF_TOPIC, payload, dedupe_key=f"{STAFF_TOPIC}:{dedupe_key}")
