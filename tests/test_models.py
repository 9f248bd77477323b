"""The data model's own guarantees, enforced by the database on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Notification,
    OutboxMessage,
    OutboxStatus,
    Payment,
    PaymentEvent,
    PaymentStatus,
    PromoCode,
    PromoKind,
    PromoRedemption,
    RedemptionStatus,
    Subscription,
    SubscriptionStatus,
    TrialGrant,
    User,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def make_user(db: AsyncSession, telegram_id: int = 1001) -> User:
    user = User(telegram_id=telegram_id, referral_code=f"r{telegram_id}", language="ru")
    db.add(user)
    await db.flush()
    return user


def make_payment(user: User, key: str, external_id: str | None, provider: str = "yookassa") -> Payment:
    return Payment(
        public_id=key,
        user_id=user.id,
        provider=provider,
        amount_minor=19900,
        currency="RUB",
        status=PaymentStatus.PENDING,
        external_id=external_id,
        idempotency_key=key,
        days=30,
    )


async def expect_rejected(db: AsyncSession, *objects: object) -> None:
    """The flush must fail on a constraint, and the session stays usable afterwards."""
    savepoint = await db.begin_nested()
    db.add_all(objects)
    with pytest.raises(IntegrityError):
        await db.flush()
    await savepoint.rollback()


async def test_duplicate_payment_external_id_is_rejected_per_provider(db: AsyncSession) -> None:
    user = await make_user(db)
    db.add(make_payment(user, "k1", "ext-1"))
    await db.flush()
    await expect_rejected(db, make_payment(user, "k2", "ext-1"))
    # The same external id at another provider is a different payment.
    db.add(make_payment(user, "k3", "ext-1", provider="wata"))
    # Payments not yet sent to a provider have no external id; many may exist.
    db.add_all([make_payment(user, "k4", None), make_payment(user, "k5", None)])
    await db.flush()
    assert await db.scalar(select(Payment.id).where(Payment.idempotency_key == "k5"))


async def test_duplicate_idempotency_key_is_rejected(db: AsyncSession) -> None:
    user = await make_user(db)
    db.add(make_payment(user, "same", "a"))
    await db.flush()
    await expect_rejected(db, make_payment(user, "same", "b"))


async def test_non_positive_amount_is_rejected(db: AsyncSession) -> None:
    user = await make_user(db)
    payment = make_payment(user, "zero", "z")
    payment.amount_minor = 0
    await expect_rejected(db, payment)


async def test_second_trial_is_rejected_for_user_and_for_telegram_account(db: AsyncSession) -> None:
    user = await make_user(db, telegram_id=555)
    db.add(TrialGrant(user_id=user.id, telegram_id=555))
    await db.flush()
    await expect_rejected(db, TrialGrant(user_id=user.id, telegram_id=556))
    # A re-registered Telegram account (new user row, same telegram id) gets no second trial either.
    await expect_rejected(db, TrialGrant(user_id=None, telegram_id=555))


async def test_provider_event_is_recorded_once(db: AsyncSession) -> None:
    event = {"provider": "razorpay", "event_id": "evt_1", "kind": "payment.captured", "payload": {}}
    db.add(PaymentEvent(received_at=NOW, **event))
    await db.flush()
    await expect_rejected(db, PaymentEvent(received_at=NOW, **event))


async def test_notification_dedupe_key_is_unique(db: AsyncSession) -> None:
    user = await make_user(db)
    first = Notification(user_id=user.id, kind="expiry_3d", dedupe_key="expiry:1:3d", status="pending")
    db.add(first)
    await db.flush()
    again = Notification(user_id=user.id, kind="expiry_3d", dedupe_key="expiry:1:3d", status="pending")
    await expect_rejected(db, again)


async def test_outbox_dedupe_key_is_unique(db: AsyncSession) -> None:
    message = {"topic": "panel.extend", "payload": {"account": 1}, "status": OutboxStatus.PENDING}
    db.add(OutboxMessage(dedupe_key="payment:1:provision", **message))
    await db.flush()
    await expect_rejected(db, OutboxMessage(dedupe_key="payment:1:provision", **message))
    db.add_all([OutboxMessage(**message), OutboxMessage(**message)])  # no key: no dedupe
    await db.flush()


async def test_once_per_user_promo_allows_a_new_hold_only_after_release(db: AsyncSession) -> None:
    user = await make_user(db)
    promo = PromoCode(code="SALE", kind=PromoKind.PERCENT, percent=10)
    db.add(promo)
    await db.flush()
    held = PromoRedemption(promo_code_id=promo.id, user_id=user.id, status=RedemptionStatus.HELD)
    db.add(held)
    await db.flush()
    await expect_rejected(db, PromoRedemption(promo_code_id=promo.id, user_id=user.id, status=RedemptionStatus.HELD))
    held.status = RedemptionStatus.RELEASED
    await db.flush()
    db.add(PromoRedemption(promo_code_id=promo.id, user_id=user.id, status=RedemptionStatus.HELD))
    await db.flush()


async def test_promo_used_count_cannot_pass_max_uses(db: AsyncSession) -> None:
    await expect_rejected(db, PromoCode(code="MAX", kind=PromoKind.DAYS, extra_days=3, max_uses=1, used_count=2))


async def test_status_outside_the_enum_is_rejected(db: AsyncSession) -> None:
    user = await make_user(db)
    payment = make_payment(user, "bad-status", "x")
    payment.status = "paid"  # type: ignore[assignment]
    db.add(payment)
    with pytest.raises(StatementError):
        await db.flush()
    await db.rollback()


async def test_datetimes_come_back_aware_utc_and_naive_ones_are_refused(db: AsyncSession) -> None:
    user = await make_user(db)
    noon = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    sub = Subscription(
        user_id=user.id,
        status=SubscriptionStatus.ACTIVE,
        starts_at=noon,
        ends_at=noon + timedelta(days=30),
    )
    db.add(sub)
    await db.flush()
    db.expunge_all()
    loaded = await db.get(Subscription, sub.id)
    assert loaded is not None
    assert loaded.ends_at.tzinfo is not None
    assert loaded.ends_at == noon + timedelta(days=30)
    loaded.ends_at = datetime(2027, 1, 1)  # naive
    with pytest.raises(StatementError):
        await db.flush()
    await db.rollback()


async def test_subscription_cannot_end_before_it_starts(db: AsyncSession) -> None:
    user = await make_user(db)
    await expect_rejected(
        db,
        Subscription(user_id=user.id, status=SubscriptionStatus.ACTIVE, starts_at=NOW, ends_at=NOW - timedelta(days=1)),
    )
