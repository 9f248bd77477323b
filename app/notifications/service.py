"""Messages to customers and alerts to staff, queued in the caller's transaction through the outbox, so they go
out exactly when (and only if) the change they report commits. The dedupe key makes each one happen once even
if the code that queues it runs twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox import service as outbox

USER_TOPIC = "notify.user"
STAFF_TOPIC = "notify.staff"


class UserNotice(NamedTuple):
    """One message to one user, as `notify_users` takes them."""

    user_id: int
    kind: str
    data: dict[str, Any]
    dedupe_key: str


def _user_message(notice: UserNotice) -> tuple[dict[str, Any], str]:
    """The outbox payload and dedupe key of a user message."""
    payload = {"user_id": notice.user_id, "kind": notice.kind, "data": notice.data, "dedupe_key": notice.dedupe_key}
    return payload, f"{USER_TOPIC}:{notice.dedupe_key}"


async def notify_user(session: AsyncSession, user_id: int, kind: str, data: dict[str, Any], *, dedupe_key: str) -> None:
    """Queue a message of `kind` (payment_succeeded, payment_failed, referral_bonus…) to the user."""
    payload, key = _user_message(UserNotice(user_id, kind, data, dedupe_key))
    await outbox.add(session, USER_TOPIC, payload, dedupe_key=key)


async def notify_users(session: AsyncSession, notices: Sequence[UserNotice]) -> None:
    """Queue many user messages at once (a job's batch), each exactly as `notify_user` would."""
    await outbox.add_many(session, USER_TOPIC, [_user_message(notice) for notice in notices])


async def alert_staff(session: AsyncSession, kind: str, data: dict[str, Any], *, dedupe_key: str) -> None:
    """Queue an alert (a payment mismatch, a provider refusing refunds…) for the staff on duty."""
    payload = {"kind": kind, "data": data, "dedupe_key": dedupe_key}
    await outbox.add(session, STAFF_TOPIC, payload, dedupe_key=f"{STAFF_TOPIC}:{dedupe_key}")
