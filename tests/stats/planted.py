"""A small shop planted on known dates, whose every figure is worked out by hand in the tests' comments.
NOW is 2026-03-15 12:00 UTC; "today" is 15 March, "yesterday" 14 March, the MAU window 14 Feb – 15 Mar."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
    Subscription,
    SubscriptionStatus,
    UsageDaily,
    User,
    UserActivityDay,
    VpnAccount,
)
from app.stats.rates import set_rate
from tests.factories import add_server

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
TODAY = date(2026, 3, 15)
YESTERDAY = date(2026, 3, 14)


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def plant_refund(db: AsyncSession, payment: Payment, amount_minor: int, succeeded_at: datetime) -> PaymentRefund:
    refund = PaymentRefund(
        public_id=str(uuid.uuid4()),
        payment_id=payment.id,
        amount_minor=amount_minor,
        currency=payment.currency,
        status=RefundStatus.SUCCEEDED,
        succeeded_at=succeeded_at,
    )
    db.add(refund)
    return refund


async def plant_shop(db: AsyncSession, *, usd_rate_from_march_1: bool = False) -> dict[str, User]:
    users = {
        "u1": User(telegram_id=1, referral_code="r1", created_at=at(3, 1, 10)),
        "u2": User(telegram_id=2, referral_code="r2", created_at=at(3, 14, 9)),
        "u3": User(telegram_id=3, referral_code="r3", created_at=at(3, 15, 8)),
        "u4": User(telegram_id=4, referral_code="r4", created_at=at(3, 15, 11, 59)),
        "u6": User(telegram_id=6, referral_code="r6", created_at=at(3, 14, 23, 59, 59)),
    }
    db.add_all(users.values())
    await db.flush()
    u = {name: user.id for name, user in users.items()}

    # Opened the app: u1 today, yesterday and 10 Feb (outside the window); u2 yesterday; u3 today;
    # u4 on 14 Feb (the window's first day); u6 on 13 Feb (the day before it).
    activity = [
        ("u1", TODAY), ("u1", YESTERDAY), ("u1", date(2026, 2, 10)), ("u2", YESTERDAY), ("u3", TODAY),
        ("u4", date(2026, 2, 14)), ("u6", date(2026, 2, 13)),
    ]  # fmt: skip
    db.add_all(UserActivityDay(user_id=u[name], day=day) for name, day in activity)

    def subscription(name: str, status: SubscriptionStatus, starts: datetime, ends: datetime, **extra) -> Subscription:
        row = Subscription(user_id=u[name], status=status, starts_at=starts, ends_at=ends, **extra)
        db.add(row)
        return row

    s1 = subscription("u1", SubscriptionStatus.ACTIVE, at(3, 1), at(4, 1))  # live paid, now and yesterday
    s2 = subscription("u2", SubscriptionStatus.TRIAL, at(3, 14, 9), at(3, 21), is_trial=True)  # live trial
    # Cancelled this morning: live (paid) at the end of yesterday, not now.
    s3 = subscription("u3", SubscriptionStatus.CANCELLED, at(3, 1), at(4, 15), cancelled_at=at(3, 15, 10))
    s4 = subscription("u4", SubscriptionStatus.EXPIRED, at(2, 10), at(3, 10))  # ended before both
    subscription("u6", SubscriptionStatus.PENDING, at(3, 15), at(4, 15))  # a checkout: never live
    subscription("u2", SubscriptionStatus.ACTIVE, at(3, 16), at(4, 16))  # starts tomorrow
    await db.flush()

    # VPN traffic: u1 today and yesterday; u2 a zero row today (not use); u3 on two accounts today (one
    # customer); u4 on 14 Feb (the window's first day).
    server = await add_server(db)
    accounts = {}
    for name, sub in (("u1", s1), ("u2", s2), ("u3", s3), ("u4", s4)):
        accounts[name] = VpnAccount(
            user_id=u[name], subscription_id=sub.id, server_id=server.id, panel_username=f"p{name}", sub_token=name
        )
    db.add_all(accounts.values())
    await db.flush()
    second_u3 = subscription("u3", SubscriptionStatus.EXPIRED, at(1, 1), at(2, 1))
    await db.flush()
    extra = VpnAccount(user_id=u["u3"], subscription_id=second_u3.id, server_id=server.id, panel_username="pu3b",
                       sub_token="u3b")  # fmt: skip
    db.add(extra)
    await db.flush()
    usage = [
        (accounts["u1"], TODAY, 100), (accounts["u1"], YESTERDAY, 50), (accounts["u2"], TODAY, 0),
        (accounts["u3"], TODAY, 10), (extra, TODAY, 20), (accounts["u4"], date(2026, 2, 14), 5),
    ]  # fmt: skip
    db.add_all(
        UsageDaily(vpn_account_id=account.id, user_id=account.user_id, day=day, download_bytes=size)
        for account, day, size in usage
    )
    # Online: u1's account 9 minutes ago (online), u2's 11 minutes ago (not), the others never.
    accounts["u1"].online_at = at(3, 15, 11, 51)
    accounts["u2"].online_at = at(3, 15, 11, 49)

    def payment(key: str, amount_minor: int, currency: str, status: PaymentStatus, **extra) -> Payment:
        row = Payment(
            public_id=key,
            user_id=u["u1"],
            provider="demo",
            amount_minor=amount_minor,
            currency=currency,
            status=status,
            idempotency_key=key,
            external_id=key,
            days=30,
            **extra,
        )
        db.add(row)
        return row

    payment("p1", 199_00, "RUB", PaymentStatus.SUCCEEDED, paid_at=at(3, 15, 9))
    # Paid yesterday, refunded today: yesterday's income, today's refund.
    p2 = payment("p2", 299_00, "RUB", PaymentStatus.REFUNDED, paid_at=at(3, 14, 10), refunded_at=at(3, 15, 11),
                 refunded_minor=299_00)  # fmt: skip
    payment("p3", 150, "XTR", PaymentStatus.SUCCEEDED, paid_at=at(3, 15, 10))
    payment("p4", 500_00, "RUB", PaymentStatus.MISMATCH, paid_at=at(3, 15, 10))  # never revenue
    payment("p5", 100_00, "RUB", PaymentStatus.PENDING)  # never revenue
    payment("p6", 2_99, "USD", PaymentStatus.SUCCEEDED, paid_at=at(3, 2, 12))  # this month, not today
    payment("p7", 1000_00, "RUB", PaymentStatus.SUCCEEDED, paid_at=at(2, 28, 23, 59))  # last month

    await db.flush()
    # The refund that emptied p2, as app/payments/refunds.py records it.
    plant_refund(db, p2, 299_00, at(3, 15, 11))

    # Rates into RUB: Stars 1.30 from 1 March and 1.50 from today; USD 90 from 10 March only (so the 2 March
    # payment has no rate) unless asked for 92.50 from 1 March.
    await set_rate(db, "XTR", "RUB", date(2026, 3, 1), Decimal("1.30"))
    await set_rate(db, "XTR", "RUB", TODAY, Decimal("1.5"))
    await set_rate(db, "USD", "RUB", date(2026, 3, 10), Decimal(90))
    if usd_rate_from_march_1:
        await set_rate(db, "USD", "RUB", date(2026, 3, 1), Decimal("92.50"))
    await db.commit()
    return users
