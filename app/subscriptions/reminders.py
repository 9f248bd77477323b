"""Expiry reminders (SPEC §4.2, §9): 3, 2 and 1 days before a live subscription ends, each stage once per end
date; a trial hears only the last day ("trial ending").

The stage is the whole days left, rounded up, so stage s is the range of end dates (now + s-1 days,
now + s days]. A run walks each stage's range on ix_subscriptions_status_ends_at in (ends_at, id) order, one
status at a time, so every batch starts where the last one stopped instead of scanning the range again. Built
for a million subscriptions: a batch is one UPDATE … RETURNING that marks the rows it takes (last_reminder_days
and last_reminder_for, the end date the reminder was about) and one statement queueing their messages, in one
transaction. A row is taken by one run only (the UPDATE checks "not reminded yet" again on the row it locks),
a message is queued exactly when its mark commits, and the dedupe keys make even a lost mark harmless.

A marked row is skipped while its mark is for the same end date and the same or a later stage; a renewal
moves the end date, so the reminders start over. A job that was down sends only the current stage.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, tuple_, update

from app.db import transaction
from app.kit.clock import utcnow
from app.models import Subscription, SubscriptionStatus
from app.notifications.service import UserNotice, notify_users
from app.payments.registry import PaymentRegistry
from app.resources import Resources
from app.runtime_settings import service as runtime_settings
from app.subscriptions.renewal_methods import (
    Renewal,
    charged_providers,
    has_method,
    renewal_by,
    self_renewing_providers,
)

STAGES = (3, 2, 1)
# Only the last day reaches trials; paid subscriptions hear every stage.
STATUSES_OF_STAGE = {
    3: (SubscriptionStatus.ACTIVE,),
    2: (SubscriptionStatus.ACTIVE,),
    1: (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIAL),
}
BATCH = 5000


def statuses_of_stage(stage: int) -> tuple[SubscriptionStatus, ...]:
    """Staff may choose other days (/admin/settings, reminder_days); trials still hear only the last day."""
    return STATUSES_OF_STAGE.get(stage, (SubscriptionStatus.ACTIVE,))


Position = tuple[datetime, int]  # (ends_at, id) of the last row a batch took


def _not_reminded(stage: int) -> ColumnElement[bool]:
    """This stage (or a later one) has not been sent for the current end date."""
    sent_already = and_(
        Subscription.last_reminder_for == Subscription.ends_at, Subscription.last_reminder_days <= stage
    )
    # Spelled out instead of NOT(sent_already): NOT of a comparison with NULL is NULL, not true.
    return or_(Subscription.last_reminder_for.is_(None), Subscription.last_reminder_days.is_(None), ~sent_already)


def _mark_batch(
    stage: int, status: SubscriptionStatus, now: datetime, after: Position | None, batch: int, payments: PaymentRegistry
) -> Any:
    """Mark the next `batch` rows of `status` due at `stage` (after `after`) and return what their messages
    need."""
    take = [
        Subscription.status == status,
        Subscription.ends_at > now + timedelta(days=stage - 1),
        Subscription.ends_at <= now + timedelta(days=stage),
        _not_reminded(stage),
    ]
    if after is not None:
        # The plain bound keeps the index range tight; the row comparison breaks ties between equal end dates.
        take += [Subscription.ends_at >= after[0], tuple_(Subscription.ends_at, Subscription.id) > tuple_(*after)]
    next_rows = select(Subscription.id).where(*take).order_by(Subscription.ends_at, Subscription.id).limit(batch)
    return (
        update(Subscription)
        # Checked again on the row the UPDATE locks: a concurrent run that reminded it meanwhile wins.
        .where(Subscription.id.in_(next_rows.scalar_subquery()), _not_reminded(stage))
        .values(last_reminder_days=stage, last_reminder_for=Subscription.ends_at)
        .returning(
            Subscription.id,
            Subscription.user_id,
            Subscription.status,
            Subscription.ends_at,
            Subscription.auto_renew,
            Subscription.plan_id,
            # Raw facts only, decided in Python: SQLite 3.40 evaluates `plan_id IS NOT NULL` wrongly in RETURNING.
            has_method(self_renewing_providers(payments)).label("self_renewing"),
            has_method(charged_providers(payments)).label("charged"),
        )
        .execution_options(synchronize_session=False)
    )


def _notice(row: Any, stage: int) -> UserNotice:
    subscription_id, user_id, status, ends_at, auto_renew, plan_id, self_renewing, charged = row
    when = ends_at.isoformat()
    if status == SubscriptionStatus.TRIAL:
        data: dict[str, Any] = {"ends_at": when, "subscription_id": subscription_id}
        return UserNotice(user_id, "trial_ending", data, f"trial_ending:{subscription_id}:{when}")
    renewal = renewal_by(self_renewing=bool(self_renewing), charged=bool(charged))
    # What the expiry job will do: a card is charged only for a plan it can price.
    renews = auto_renew and (renewal == Renewal.PROVIDER or (renewal == Renewal.CHARGE and plan_id is not None))
    data = {"days": stage, "ends_at": when, "auto_renew": bool(renews), "subscription_id": subscription_id}
    return UserNotice(user_id, "expiry_reminder", data, f"expiry_reminder:{subscription_id}:{when}:{stage}")


async def _walk(
    resources: Resources, stage: int, status: SubscriptionStatus, now: datetime, batch: int, lane: asyncio.Semaphore
) -> int:
    """Remind every subscription of `status` due at `stage`, batch after batch; returns how many."""
    queued = 0
    after: Position | None = None
    async with lane:
        while True:
            async with transaction(resources.sessionmaker) as session:
                statement = _mark_batch(stage, status, now, after, batch, resources.payments)
                rows = list((await session.execute(statement)).all())
                await notify_users(session, [_notice(row, stage) for row in rows])
            # Only an empty batch ends the walk: a short one may just mean a concurrent run took some rows.
            if not rows:
                return queued
            queued += len(rows)
            after = max((row.ends_at, row.id) for row in rows)


async def send_reminders(resources: Resources, *, batch: int = BATCH) -> dict[int, int]:
    """Queue the reminders due now; returns how many were queued per stage."""
    now = utcnow()
    async with resources.sessionmaker() as session:
        stages = (await runtime_settings.current(session, resources.settings)).reminder_days
    walks = [(stage, status) for stage in stages for status in statuses_of_stage(stage)]
    # The walks touch disjoint rows, so on PostgreSQL they run side by side: one backend's writes overlap another
    # batch's Python work. SQLite has a single writer, so there they take turns.
    lane = asyncio.Semaphore(len(walks) if resources.engine.dialect.name == "postgresql" else 1)
    counts = await asyncio.gather(*(_walk(resources, stage, status, now, batch, lane) for stage, status in walks))
    queued = dict.fromkeys(stages, 0)
    for (stage, _), count in zip(walks, counts, strict=True):
        queued[stage] += count
    return queued
