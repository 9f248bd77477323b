"""The demo's year of history (app/demo/history.py): every finance figure has something to show."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.demo.history import CUSTOMERS, seed_history
from app.demo.seed import seed_demo
from app.kit.clock import FrozenClock
from app.models import Payment, PaymentStatus, PromoRedemption, ReferralReward, User
from app.stats import finance
from app.stats.demo import prepare_demo_stats

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


async def test_a_year_that_tells_a_story(db: AsyncSession, freeze: Callable[[datetime], FrozenClock]) -> None:
    freeze(NOW)
    await seed_demo(db)
    await seed_history(db, NOW)
    await prepare_demo_stats(db, "RUB", NOW)
    await db.commit()
    assert await db.scalar(select(func.count()).select_from(User)) == CUSTOMERS + 1  # and the demo customer
    statuses = dict((await db.execute(select(Payment.status, func.count()).group_by(Payment.status))).all())
    assert statuses[PaymentStatus.SUCCEEDED] > 100
    assert statuses[PaymentStatus.REFUNDED] >= 1 and statuses[PaymentStatus.FAILED] >= 1
    assert await db.scalar(select(func.count()).select_from(PromoRedemption)) > 0
    assert await db.scalar(select(func.count()).select_from(ReferralReward)) > 0

    report = await finance.finance_report(db, NOW, "month", "RUB")
    # Money in most months of the year, in several currencies, every one of them converted (demo rates).
    assert sum(1 for bucket in report.revenue.current if bucket.amount > 0) >= 10
    assert len(report.by_currency) >= 4 and report.missing_rates == set()
    assert report.mrr.paying > 10 and report.mrr.converted.amount > 0
    assert any(month.churned for month in report.months) and report.ltv is not None
    assert any(cohort.converted for cohort in report.trials)
    assert sum(1 for cohort in report.cohorts if cohort.size) >= 10
    assert report.renewals.created > report.renewals.succeeded > 0
