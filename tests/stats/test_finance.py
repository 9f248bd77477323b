"""The finance figures (app/stats/finance.py) on a planted shop whose every answer is worked out by hand below.

NOW is 2026-03-20 12:00 UTC. Rates into RUB from 1 Jan: USD 90, Stars 1.5. Plans: "m" (30 days), "q" (90 days).

    A  pays 1000 RUB on 10 Jan (first), renews 9 Feb and 11 Mar (1000 each): one subscription, 10 Jan – 10 Apr.
    B  pays 1000 RUB on 20 Jan: 20 Jan – 19 Feb; the renewal charge on 19 Feb fails; never pays again: churns
       in February (access ended 19 Feb, grace to 26 Feb passed, no payment).
    C  trial 2 – 5 Feb, pays 6.00 USD for 90 days on 4 Feb (converts): 4 Feb – 5 May; monthly value 2.00 USD.
    D  trial 10 – 13 Feb, a failed checkout on 12 Feb, never pays (does not convert).
    E  pays 500 RUB on 15 Feb, refunded (and cancelled) on 16 Feb.
    G  pays 250 Stars on 20 Feb: 20 Feb – 22 Mar.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import create_sessionmaker
from app.kit.clock import FrozenClock
from app.models import (
    DailyCheckouts,
    DailyRevenue,
    Payment,
    PaymentStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
    User,
)
from app.stats import finance
from app.stats.rates import set_rate
from app.stats.rollup import roll_up
from tests.stats.planted import plant_refund

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


async def plant(db: AsyncSession) -> dict[str, int]:
    month_plan = Plan(code="m", name={"en": "Month", "ru": "Месяц"}, duration_days=30)
    quarter_plan = Plan(code="q", name={"en": "Quarter", "ru": "Квартал"}, duration_days=90)
    db.add_all([month_plan, quarter_plan])
    people = {name: User(telegram_id=index, referral_code=f"f{name}", created_at=at(1, 1)) for index, name in
              enumerate("ABCDEG", start=1)}  # fmt: skip
    db.add_all(people.values())
    await db.flush()
    u = {name: user.id for name, user in people.items()}

    def subscription(name: str, status: SubscriptionStatus, starts: datetime, ends: datetime, **extra) -> Subscription:
        row = Subscription(user_id=u[name], status=status, starts_at=starts, ends_at=ends, created_at=starts, **extra)
        db.add(row)
        return row

    sa = subscription("A", SubscriptionStatus.ACTIVE, at(1, 10), at(4, 10), plan_id=month_plan.id)
    sb = subscription("B", SubscriptionStatus.EXPIRED, at(1, 20), at(2, 19), plan_id=month_plan.id)
    subscription("C", SubscriptionStatus.EXPIRED, at(2, 2), at(2, 5), is_trial=True)
    sc = subscription("C", SubscriptionStatus.ACTIVE, at(2, 4), at(5, 5), plan_id=quarter_plan.id)
    subscription("D", SubscriptionStatus.EXPIRED, at(2, 10), at(2, 13), is_trial=True)
    se = subscription("E", SubscriptionStatus.CANCELLED, at(2, 15), at(3, 17), cancelled_at=at(2, 16),
                      plan_id=month_plan.id)  # fmt: skip
    sg = subscription("G", SubscriptionStatus.ACTIVE, at(2, 20), at(3, 22), plan_id=month_plan.id)
    await db.flush()

    count = 0

    def payment(name: str, sub: Subscription | None, amount: int, currency: str, provider: str, when: datetime,
                status: PaymentStatus = PaymentStatus.SUCCEEDED, method: str | None = None, days: int = 30,
                **extra) -> None:  # fmt: skip
        nonlocal count
        count += 1
        paid = status in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
        if status == PaymentStatus.REFUNDED:  # refunded whole, as app/payments/refunds.settle records it
            extra["refunded_minor"] = amount
        row = Payment(
            public_id=f"pay{count}", user_id=u[name], subscription_id=sub.id if sub else None,
            plan_id=sub.plan_id if sub else None, provider=provider, method=method, amount_minor=amount,
            currency=currency, status=status, idempotency_key=f"k{count}", external_id=f"x{count}", days=days,
            created_at=when, paid_at=when if paid else None, **extra,
        )  # fmt: skip
        db.add(row)
        if status == PaymentStatus.REFUNDED:
            refunded.append(row)

    refunded: list[Payment] = []

    card = {"provider": "yookassa", "method": "bank_card"}
    payment("A", sa, 1000_00, "RUB", when=at(1, 10), **card)
    payment("B", sb, 1000_00, "RUB", when=at(1, 20), **card)
    payment("A", sa, 1000_00, "RUB", when=at(2, 9), is_renewal=True, **card)
    payment("C", sc, 6_00, "USD", "cryptobot", at(2, 4), days=90)
    payment("D", None, 1000_00, "RUB", when=at(2, 12), status=PaymentStatus.FAILED, **card)
    payment("E", se, 500_00, "RUB", when=at(2, 15), status=PaymentStatus.REFUNDED, refunded_at=at(2, 16), **card)
    payment("B", sb, 1000_00, "RUB", when=at(2, 19), status=PaymentStatus.FAILED, is_renewal=True, **card)
    payment("G", sg, 250, "XTR", "stars", at(2, 20))
    payment("A", sa, 1000_00, "RUB", when=at(3, 11), is_renewal=True, **card)
    await db.flush()
    for row in refunded:
        plant_refund(db, row, row.amount_minor, row.refunded_at)
    await set_rate(db, "USD", "RUB", date(2026, 1, 1), Decimal(90))
    await set_rate(db, "XTR", "RUB", date(2026, 1, 1), Decimal("1.5"))
    await db.commit()
    return {"month": month_plan.id, "quarter": quarter_plan.id}


def rub(amount: str) -> Decimal:
    return Decimal(amount)


async def test_finance_on_a_planted_month(db: AsyncSession) -> None:
    plans = await plant(db)
    report = await finance.finance_report(db, NOW, "month", "RUB")

    # Revenue by month: the current period is April 2025 – March 2026; the previous one the 12 months before.
    revenue = report.revenue
    assert revenue.buckets[0] == date(2025, 4, 1) and revenue.buckets[-1] == date(2026, 3, 1)
    jan, feb, mar = (converted.amount for converted in revenue.current[-3:])
    # January: A 1000 + B 1000. February: A's renewal 1000 + E 500 - E's refund 500 = 1000 RUB, C 6.00 USD × 90 =
    # 540, G 250 Stars × 1.5 = 375: 1915. March so far: A's renewal 1000.
    assert (jan, feb, mar) == (rub("2000"), rub("1915"), rub("1000"))
    assert all(converted.amount == 0 for converted in revenue.previous)
    # The whole period: 4000 RUB net (4500 in, 500 refunded) + 540 + 375 = 4915.
    assert revenue.total.converted.amount == rub("4915") and revenue.total.converted.complete
    by_currency = {row.key: row for row in report.by_currency}
    assert by_currency["RUB"].by_currency["RUB"].gross_minor == 4500_00
    assert (by_currency["RUB"].refunds, by_currency["RUB"].by_currency["RUB"].refunded_minor) == (1, 500_00)
    assert by_currency["USD"].by_currency["USD"].net_minor == 6_00
    assert by_currency["XTR"].converted.amount == rub("375")
    assert [(row.key, row.converted.amount) for row in report.by_provider] == [
        ("yookassa", rub("4000")), ("cryptobot", rub("540")), ("stars", rub("375")),
    ]  # fmt: skip
    by_plan = {row.key: row.converted.amount for row in report.by_plan}
    assert by_plan == {str(plans["month"]): rub("4375"), str(plans["quarter"]): rub("540")}

    # Daily and weekly buckets split the same money: the last 30 days (19 Feb – 20 Mar) hold G's Stars on
    # 20 Feb and A's renewal on 11 March.
    daily = (await finance.finance_report(db, NOW, "day", "RUB")).revenue
    assert daily.buckets[0] == date(2026, 2, 19) and daily.buckets[-1] == date(2026, 3, 20)
    assert [(d, c.amount) for d, c in zip(daily.buckets, daily.current, strict=True) if c.amount] == [
        (date(2026, 2, 20), rub("375")), (date(2026, 3, 11), rub("1000")),
    ]  # fmt: skip
    # The 30 days before (19 Jan – 19 Feb): B's 1000, C's 540, A's 1000, E's 500 - 500 refunded: 2540.
    assert daily.previous_total.converted.amount == rub("2540")
    weekly = (await finance.finance_report(db, NOW, "week", "RUB")).revenue
    assert weekly.buckets[-1] == date(2026, 3, 16)  # a Monday
    assert weekly.total.converted.amount == rub("4915")

    # MRR now: A 1000 RUB (its latest payment, a month), C 6.00 USD ÷ 3 months = 2.00 USD = 180 RUB, G 250 Stars
    # = 375 RUB (B ended, E refunded and cancelled): 1555 RUB from 3 paying customers; ARPPU 518.33.
    assert report.mrr.converted.amount == rub("1555") and report.mrr.paying == 3
    assert report.mrr.by_currency == {"RUB": Decimal(1000_00), "USD": Decimal(2_00), "XTR": Decimal(250)}
    assert report.mrr.arppu.quantize(Decimal("0.01")) == rub("518.33")

    months = {row.month: row for row in report.months}
    february = months[date(2026, 2, 1)]
    # Paying on 1 Feb: A and B. B's access ended 19 Feb, no payment in the 7 days after: churned. 1 / 2.
    assert (february.paying_at_start, february.churned, february.churn) == (2, 1, Decimal("0.5"))
    assert february.churned_mrr.amount == rub("1000") and february.complete
    # New in February: C (180), E (500, refunded later but a first payment all the same) and G (375): 1055.
    # Renewed: A's 9 Feb charge, 1000.
    assert (february.new, february.new_mrr.amount, february.renewed, february.renewed_mrr.amount) == (
        3, rub("1055"), 1, rub("1000"),
    )  # fmt: skip
    march = months[date(2026, 3, 1)]
    # Paying on 1 March: A, C and G; G's access ends 22 March but its grace runs past now: not churned (yet).
    assert (march.paying_at_start, march.churned, march.complete) == (3, 0, False)
    january = months[date(2026, 1, 1)]
    assert (january.paying_at_start, january.churn, january.new, january.new_mrr.amount) == (0, None, 2, rub("2000"))
    # LTV: ARPPU ÷ churn of the last three complete months (Dec 0/0, Jan 0/0, Feb 1/2) = 518.33 ÷ 0.5 = 1036.67.
    assert report.ltv.quantize(Decimal("0.01")) == rub("1036.67")

    # Trial → paid: February's trials C (paid two days later) and D (never): 1 of 2.
    trials = {row.month: row for row in report.trials}
    assert (trials[date(2026, 2, 1)].started, trials[date(2026, 2, 1)].converted) == (2, 1)
    assert trials[date(2026, 2, 1)].rate == Decimal("0.5")
    assert trials[date(2026, 1, 1)].started == 0

    # Retention by month of first payment. January: A and B, both with access in Jan and Feb, only A in March.
    # February: C, E and G, all three in Feb; C and G in March (E's access ended on 16 Feb).
    cohorts = {row.month: row for row in report.cohorts}
    assert (cohorts[date(2026, 1, 1)].size, cohorts[date(2026, 1, 1)].retained) == (2, [2, 2, 1])
    assert (cohorts[date(2026, 2, 1)].size, cohorts[date(2026, 2, 1)].retained) == (3, [3, 2])
    assert (cohorts[date(2026, 3, 1)].size, cohorts[date(2026, 3, 1)].retained) == (0, [0])
    assert cohorts[date(2025, 4, 1)].retained == [0] * 12

    # Success: card checkouts 7 created (A ×3, B ×2, D, E), 5 succeeded (E's refund did succeed first);
    # crypto 1 of 1, Stars 1 of 1. Renewal charges: A's two succeeded, B's failed: 2 of 3.
    assert [(r.provider, r.method, r.created, r.succeeded) for r in report.success] == [
        ("cryptobot", None, 1, 1), ("stars", None, 1, 1), ("yookassa", "bank_card", 7, 5),
    ]  # fmt: skip
    assert (report.success_total.created, report.success_total.succeeded) == (9, 7)
    assert (report.renewals.created, report.renewals.succeeded) == (3, 2)
    assert [(r.currency, r.rate) for r in report.rates] == [("USD", Decimal(90)), ("XTR", Decimal("1.5"))]
    assert report.missing_rates == set()


async def test_the_page_shows_what_the_worker_stored_and_counts_only_today(
    engine: AsyncEngine, db: AsyncSession
) -> None:
    """With 100,000 customers the paid history takes seconds to go through, so the worker stores the finished days'
    revenue lines and the history's figures (app/stats/rollup.py) and the page reads them. What it reads must be
    exactly what it would have counted, and what happens after the worker's run must show where it is live."""
    plans = await plant(db)
    counted = await finance.finance_report(db, NOW, "month", "RUB")
    await roll_up(create_sessionmaker(engine), NOW)
    assert await finance.finance_report(db, NOW, "month", "RUB") == counted

    # A new customer pays 700 RUB after the run: today's revenue is counted live and shows it; MRR and March's
    # movements stay as the worker computed them (the page says as of when) until its next run.
    later = NOW + timedelta(minutes=5)
    buyer = User(telegram_id=99, referral_code="fH", created_at=later)
    db.add(buyer)
    await db.flush()
    access = Subscription(user_id=buyer.id, status=SubscriptionStatus.ACTIVE, starts_at=later,
                          ends_at=later + timedelta(days=30), plan_id=plans["month"])  # fmt: skip
    db.add(access)
    await db.flush()
    db.add(Payment(public_id="payH", user_id=buyer.id, subscription_id=access.id, plan_id=plans["month"],
                   provider="yookassa", method="bank_card", amount_minor=700_00, currency="RUB",
                   status=PaymentStatus.SUCCEEDED, idempotency_key="kH", external_id="xH", days=30, created_at=later,
                   paid_at=later))  # fmt: skip
    await db.commit()
    report = await finance.finance_report(db, later + timedelta(minutes=1), "month", "RUB")
    assert report.revenue.current[-1].amount == rub("1700")
    march = report.months[-1]
    assert (report.mrr.at, report.mrr.converted.amount, march.new) == (NOW, rub("1555"), 0)
    await roll_up(create_sessionmaker(engine), later + timedelta(minutes=10))
    report = await finance.finance_report(db, later + timedelta(minutes=11), "month", "RUB")
    assert (report.mrr.converted.amount, report.mrr.paying, report.months[-1].new) == (rub("2255"), 4, 1)

    # Finished days come from the stored lines: one changed by hand shows on the page (11 March: A's 1000).
    await db.execute(update(DailyRevenue).where(DailyRevenue.day == date(2026, 3, 11)).values(gross_minor=1100_00))
    await db.commit()
    report = await finance.finance_report(db, later + timedelta(minutes=11), "day", "RUB")
    assert dict(zip(report.revenue.buckets, (c.amount for c in report.revenue.current), strict=True))[
        date(2026, 3, 11)
    ] == rub("1100")

    # Settled days' checkouts too (A's first on 10 January), while the last SETTLE_DAYS are counted.
    await db.execute(update(DailyCheckouts).where(DailyCheckouts.day == date(2026, 1, 10)).values(created=5))
    await db.commit()
    report = await finance.finance_report(db, later + timedelta(minutes=11), "month", "RUB")
    assert (report.success_total.created, report.success_total.succeeded) == (9 + 4 + 1, 7 + 1)

    # A month begun since the worker's last run is not in its snapshot: the page computes the history itself.
    april = datetime(2026, 4, 1, 0, 5, tzinfo=UTC)
    report = await finance.finance_report(db, april, "month", "RUB")
    assert (report.mrr.at, report.months[-1].month, report.months[-2].new) == (april, date(2026, 4, 1), 1)


async def test_a_missing_rate_is_named_and_left_out(db: AsyncSession) -> None:
    await plant(db)
    report = await finance.finance_report(db, NOW, "month", "USD")
    # Into USD there is no rate at all: the RUB and Stars money is left out and named; USD counts as itself.
    assert report.revenue.total.converted.amount == Decimal("6.00")
    assert report.revenue.total.converted.missing == {"RUB", "XTR"}
    assert report.missing_rates == {"RUB", "XTR"}
    assert [(r.currency, r.rate) for r in report.rates] == [("RUB", None), ("XTR", None)]


async def test_a_wrong_granularity_is_refused(db: AsyncSession) -> None:
    with pytest.raises(ValueError, match="granularity"):
        await finance.finance_report(db, NOW, "year", "RUB")
