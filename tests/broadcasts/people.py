"""Customers in every state a segment looks at (subscriptions, payments, opt-out, blocked, unreachable, demo),
and small readers the broadcast tests share."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import service
from app.kit.clock import utcnow
from app.models import (
    AuditLog,
    Broadcast,
    BroadcastDelivery,
    Payment,
    PaymentStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
    User,
)

_telegram_ids = itertools.count(700_000_001)


@dataclass(frozen=True)
class Person:
    """What tests need of a user, kept as plain values: a rollback or reload expires ORM rows."""

    id: int
    telegram_id: int
    language: str


async def person(
    db: AsyncSession,
    *,
    language: str = "ru",
    subscription: SubscriptionStatus | None = None,
    ends_in: timedelta = timedelta(days=10),
    plan: Plan | None = None,
    paid: bool = False,
    **fields: Any,
) -> Person:
    """A user, optionally with one subscription (ending `ends_in` from now) and one succeeded payment."""
    telegram_id = fields.pop("telegram_id", None) or next(_telegram_ids)
    user = User(telegram_id=telegram_id, referral_code=f"b{telegram_id}", language=language, **fields)
    db.add(user)
    await db.flush()
    if subscription is not None:
        ends = utcnow() + ends_in
        db.add(
            Subscription(
                user_id=user.id,
                plan_id=plan.id if plan else None,
                status=subscription,
                is_trial=subscription == SubscriptionStatus.TRIAL,
                starts_at=min(ends, utcnow()) - timedelta(days=30),
                ends_at=ends,
            )
        )
    if paid:
        db.add(
            Payment(
                public_id=str(uuid.uuid4()),
                user_id=user.id,
                plan_id=plan.id if plan else None,
                provider="demo",
                amount_minor=19900,
                currency="RUB",
                status=PaymentStatus.SUCCEEDED,
                idempotency_key=uuid.uuid4().hex,
                days=30,
            )
        )
    await db.flush()
    return Person(user.id, user.telegram_id, user.language)


async def plan(db: AsyncSession, code: str) -> Plan:
    row = Plan(code=code, name={"ru": code, "en": code}, duration_days=30)
    db.add(row)
    await db.flush()
    return row


async def crowd(db: AsyncSession, count: int, **fields: Any) -> list[Person]:
    """`count` plain users (every second one English-speaking unless `language` is given)."""
    users = []
    for number in range(count):
        language = fields.get("language") or ("en" if number % 2 else "ru")
        users.append(await person(db, **(fields | {"language": language})))
    await db.commit()
    return users


def draft(**fields: Any) -> service.Draft:
    values: dict[str, Any] = {
        "title": "Spring sale",
        "bodies": {"ru": "<b>Скидка</b> 20%", "en": "<b>Sale</b> 20% off"},
    }
    return service.Draft(**(values | fields))


async def rows(db: AsyncSession, model: Any, *conditions: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


async def audit_actions(db: AsyncSession, broadcast_id: int | None = None) -> list[str]:
    query = select(AuditLog.action).where(AuditLog.entity_type == "broadcast").order_by(AuditLog.id)
    if broadcast_id is not None:
        query = query.where(AuditLog.entity_id == str(broadcast_id))
    return list((await db.scalars(query)).all())


async def reload(db: AsyncSession, broadcast_id: int) -> Broadcast:
    await db.rollback()  # a fresh snapshot: SQLite keeps the old one for the whole transaction
    broadcast = await db.get(Broadcast, broadcast_id, populate_existing=True)
    assert broadcast is not None
    return broadcast


async def deliveries(db: AsyncSession, broadcast_id: int) -> dict[int, BroadcastDelivery]:
    """The broadcast's deliveries by user id."""
    await db.rollback()
    found = await db.scalars(select(BroadcastDelivery).where(BroadcastDelivery.broadcast_id == broadcast_id))
    return {delivery.user_id: delivery for delivery in found.all()}
