"""Two runs of a job at once, on both backends (PostgreSQL locks rows; SQLite takes its write lock at a locking
read, app/db.py): each subscription is charged once, extended once, a declined charge is counted once, a reminder
is taken once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from app.models import AuditLog, DemoInvoice, Subscription, SubscriptionStatus
from app.subscriptions.reminders import send_reminders
from tests.factories import add_subscriber
from tests.payments.shop import Shop
from tests.subscriptions.steps import DECLINING_CARD, GOOD_CARD, NOW, customer, expire, messages, renewals

CUSTOMERS = 6


async def test_two_runs_at_once_charge_once_and_count_each_failure_once(shop: Shop, freeze, database_url: str) -> None:
    clock = freeze(NOW)
    declined = [(await customer(shop, 100 + n, card=DECLINING_CARD))[1].id for n in range(CUSTOMERS)]
    renewed = [(await customer(shop, 200 + n, card=GOOD_CARD))[1].id for n in range(CUSTOMERS)]
    end = NOW + timedelta(days=30)
    clock.current = end + timedelta(minutes=1)

    first, second = await asyncio.gather(expire(shop), expire(shop))
    outcomes = Counter(first) + Counter(second)
    assert outcomes["retry_scheduled"] == CUSTOMERS and outcomes["renewed"] == CUSTOMERS
    assert set(outcomes) <= {"retry_scheduled", "renewed", "busy", "unchanged"}

    payments = await renewals(shop)
    assert sorted(p.subscription_id for p in payments) == sorted(declined + renewed)  # one charge each
    async with shop.resources.sessionmaker() as session:
        invoices = await session.scalar(
            select(func.count()).select_from(DemoInvoice).where(DemoInvoice.card_token.is_not(None))
        )
        subscriptions = {s.id: s for s in (await session.scalars(select(Subscription))).all()}
        counted = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "subscription.renewal_failed")
        )
    assert invoices == len(payments)  # the provider was asked once per charge
    for subscription_id in declined:
        subscription = subscriptions[subscription_id]
        assert subscription.status == SubscriptionStatus.ACTIVE
        assert (subscription.renewal_failures, subscription.next_renewal_attempt_at) == (
            1,
            clock.current + timedelta(days=1),
        )
    for subscription_id in renewed:
        assert subscriptions[subscription_id].ends_at == clock.current + timedelta(days=30)  # extended once
    assert counted == CUSTOMERS
    assert len(await messages(shop, "renewal_failed")) == CUSTOMERS

    # And the next run finds nothing left to do.
    assert await expire(shop) == {}


async def test_two_reminder_runs_at_once_take_each_reminder_once(shop: Shop, freeze, database_url: str) -> None:
    freeze(NOW)
    for n in range(60):
        await add_subscriber(shop.db, 300 + n, ends_in=timedelta(hours=1 + n))  # stages 1, 2 and 3
    await shop.db.commit()
    first, second = await asyncio.gather(
        send_reminders(shop.resources, batch=7), send_reminders(shop.resources, batch=7)
    )
    assert {stage: first[stage] + second[stage] for stage in first} == {3: 12, 2: 24, 1: 24}
    sent = await messages(shop)
    assert len(sent) == len({message["dedupe_key"] for message in sent}) == 60
