"""Outbox handlers of notifications. Until the bot sender exists (the bot issue), a queued message is recorded
in the notification log, exactly once per dedupe key, as pending; staff alerts are logged loudly."""

from __future__ import annotations

import logging
from typing import Any

from app.db import insert_for, transaction
from app.kit.clock import utcnow
from app.models import DeliveryStatus, Notification
from app.notifications.service import STAFF_TOPIC, USER_TOPIC
from app.outbox import service as outbox

log = logging.getLogger(__name__)


@outbox.handler(USER_TOPIC)
async def record_user_notification(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    async with transaction(ctx["resources"].sessionmaker) as session:
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


@outbox.handler(STAFF_TOPIC)
async def log_staff_alert(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    log.error("staff alert %s: %s", payload["kind"], payload["data"])
