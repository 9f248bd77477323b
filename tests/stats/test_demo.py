"""The embedded demo starts with exchange rates and a rollup, so its dashboard is complete at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import FrozenClock
from app.models import DailyStats, ExchangeRate, User
from app.stats.demo import prepare_demo_stats
from app.stats.rates import load_rates
from tests.stats.planted import NOW, TODAY, YESTERDAY, at


async def test_rates_once_and_the_days_rolled_up(db: AsyncSession, freeze: Callable[[datetime], FrozenClock]) -> None:
    freeze(NOW)
    db.add(User(telegram_id=1, referral_code="r1", created_at=at(3, 14, 8)))
    await db.flush()
    await prepare_demo_stats(db, "RUB", NOW)
    await prepare_demo_stats(db, "RUB", NOW)
    await db.commit()
    assert await db.scalar(select(func.count()).select_from(ExchangeRate)) == 6
    assert (await load_rates(db, "RUB")).rate("XTR", TODAY) == Decimal("1.3")
    days = {row.day: row for row in await db.scalars(select(DailyStats))}
    assert sorted(days) == [YESTERDAY, TODAY]
    assert days[YESTERDAY].new_users == 1


async def test_no_demo_rates_for_another_reporting_currency(db: AsyncSession) -> None:
    await prepare_demo_stats(db, "USD", NOW)
    assert await db.scalar(select(func.count()).select_from(ExchangeRate)) == 0
