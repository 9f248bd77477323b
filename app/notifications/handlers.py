"""Outbox handlers that deliver notifications through the bot (SPEC §9).

A customer's message is recorded in `notifications` once per dedupe key and goes through these states:
pending → sending (committed before the Bot API call) → sent | failed | skipped | unknown. A retry of the outbox
message finds the row and does not send again: a row left in `sending` by a crash becomes `unknown`, because
Telegram has no idempotency key and a duplicate is worse than a lost reminder. Errors that prove nothing was sent
(429 after pausing every sender, 5xx, no connection) put the row back to pending and let the outbox retry with
backoff; a 403 marks the user unreachable (cleared when they come back to the bot).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.db import insert_for, transaction
from app.kit.clock import utcnow
from app.kit.i18n import translate
from app.kit.metrics import NOTIFICATIONS
from app.models import DeliveryStatus, Notification, Staff, StaffRole, User
from app.notifications.service import STAFF_TOPIC, USER_TOPIC
from app.notifications.texts import Rendered, render
from app.outbox import service as outbox
from app.resources import Resources
from app.runtime_settings import service as runtime_settings
from app.telegram.api import NotSent, OutcomeUnknown, RecipientUnreachable, TelegramError
from app.texts import overrides as text_overrides

log = logging.getLogger(__name__)

STAFF_MEMBER_TOPIC = "notify.staff_member"
SETTLED = frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED, DeliveryStatus.UNKNOWN})
# Roles told about payment problems and the like.
ALERTED_ROLES = (StaffRole.OWNER, StaffRole.ADMIN)


@dataclass(frozen=True)
class _Claimed:
    notification_id: int
    user_id: int
    chat_id: int
    message: Rendered


async def _claim(resources: Resources, payload: dict[str, Any]) -> _Claimed | None:
    """Record the notification (once) and mark it sending; None when there is nothing (more) to send."""
    async with transaction(resources.sessionmaker) as session:
        await session.execute(
            insert_for(session, Notification)
            .values(
                user_id=payload["user_id"],
                kind=payload["kind"],
                dedupe_key=payload["dedupe_key"],
                payload=payload["data"],
                status=DeliveryStatus.PENDING,
                attempts=0,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
        notification = await session.scalar(
            select(Notification).where(Notification.dedupe_key == payload["dedupe_key"]).with_for_update()
        )
        if notification is None or notification.status in SETTLED:
            return None
        if notification.status == DeliveryStatus.SENDING:
            notification.status = DeliveryStatus.UNKNOWN
            notification.error = "interrupted while sending; not sent again"
            return None
        user = await session.get(User, notification.user_id)
        skip_reason = _skip_reason(resources, user)
        if skip_reason is not None:
            notification.status = DeliveryStatus.SKIPPED
            notification.error = skip_reason
            NOTIFICATIONS.labels(notification.kind, "skipped").inc()
            return None
        assert user is not None
        message = await render(session, user, notification.kind, notification.payload, resources.settings)
        notification.status = DeliveryStatus.SENDING
        notification.attempts += 1
        return _Claimed(notification.id, user.id, user.telegram_id, message)


def _skip_reason(resources: Resources, user: User | None) -> str | None:
    if resources.telegram is None:
        return "no bot configured (BOT_TOKEN)"
    if user is None:
        return "user deleted"
    if user.is_demo:
        return "demo user"
    if user.unreachable_since is not None:
        return "user blocked the bot"
    return None


async def _settle(
    resources: Resources,
    claimed: _Claimed,
    status: DeliveryStatus,
    error: str | None = None,
    *,
    unreachable: bool = False,
) -> None:
    now = utcnow()
    async with transaction(resources.sessionmaker) as session:
        notification = await session.get_one(Notification, claimed.notification_id, with_for_update=True)
        notification.status = status
        notification.error = error
        if status == DeliveryStatus.SENT:
            notification.sent_at = now
        if unreachable:
            user = await session.get(User, claimed.user_id)
            if user is not None and user.unreachable_since is None:
                user.unreachable_since = now
        NOTIFICATIONS.labels(notification.kind, status.value).inc()


@outbox.handler(USER_TOPIC)
async def send_user_notification(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    resources: Resources = ctx["resources"]
    await text_overrides.bind(resources.sessionmaker)  # staff-edited texts, buttons included
    claimed = await _claim(resources, payload)
    if claimed is None:
        return
    assert resources.telegram is not None
    try:
        await resources.telegram.send(claimed.chat_id, claimed.message.text, reply_markup=claimed.message.reply_markup)
    except NotSent as exc:
        await _settle(resources, claimed, DeliveryStatus.PENDING, exc.description)
        raise  # the outbox retries later, with backoff
    except OutcomeUnknown as exc:
        await _settle(resources, claimed, DeliveryStatus.UNKNOWN, exc.description)
    except RecipientUnreachable as exc:
        await _settle(resources, claimed, DeliveryStatus.FAILED, exc.description, unreachable=True)
    except TelegramError as exc:
        log.error("notification %s refused by Telegram: %s", payload["dedupe_key"], exc.description)
        await _settle(resources, claimed, DeliveryStatus.FAILED, exc.description)
    else:
        await _settle(resources, claimed, DeliveryStatus.SENT)


@outbox.handler(STAFF_TOPIC)
async def fan_out_staff_alert(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """One message per owner/admin with a Telegram id, each retried on its own."""
    log.error("staff alert %s: %s", payload["kind"], payload["data"])
    resources: Resources = ctx["resources"]
    async with transaction(resources.sessionmaker) as session:
        staff = (
            await session.scalars(
                select(Staff).where(
                    Staff.is_active, Staff.telegram_id.is_not(None), Staff.role.in_(ALERTED_ROLES), ~Staff.is_demo
                )
            )
        ).all()
        for member in staff:
            await outbox.add(
                session,
                STAFF_MEMBER_TOPIC,
                {"chat_id": member.telegram_id, "kind": payload["kind"], "data": payload["data"]},
                dedupe_key=f"{STAFF_MEMBER_TOPIC}:{payload['dedupe_key']}:{member.id}",
            )
        # The staff chat (and forum topic) set in /admin/settings gets its own copy.
        live = await runtime_settings.current(session, resources.settings)
        if live.staff_alert_chat_id is not None:
            await outbox.add(
                session,
                STAFF_MEMBER_TOPIC,
                {
                    "chat_id": live.staff_alert_chat_id,
                    "thread_id": live.staff_alert_topic_id,
                    "kind": payload["kind"],
                    "data": payload["data"],
                },
                dedupe_key=f"{STAFF_MEMBER_TOPIC}:{payload['dedupe_key']}:chat",
            )


@outbox.handler(STAFF_MEMBER_TOPIC, max_attempts=50)
async def send_staff_alert(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    resources: Resources = ctx["resources"]
    if resources.telegram is None:
        return
    language = resources.settings.default_language
    data = {name: html.escape(str(value)) for name, value in payload["data"].items()}
    key = f"staff.{payload['kind']}"
    text = translate(language, key, **data)
    if text == key:
        details = "\n".join(f"{name}: {value}" for name, value in data.items())
        text = translate(language, "staff.generic", kind=payload["kind"], details=details)
    try:
        await resources.telegram.send(payload["chat_id"], text, thread_id=payload.get("thread_id"))
    except (OutcomeUnknown, RecipientUnreachable) as exc:
        log.warning("staff alert to %s not confirmed: %s", payload["chat_id"], exc.description)
