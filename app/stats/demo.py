"""The embedded demo's figures: illustrative exchange rates into the reporting currency (clearly demo values, for
the currencies the demo plans are priced in) and a first rollup of the last two weeks, so the demo dashboard is
complete from the first click rather than after the worker's first quarter hour."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ExchangeRate
from app.stats.periods import day_of
from app.stats.rates import set_rate
from app.stats.rollup import days_to_roll_up, rollup_day

# Units of RUB per unit, roughly; only for the demo.
DEMO_RATES_RUB = {"USD": "92.50", "XTR": "1.30", "INR": "1.10", "IDR": "0.0058", "USDT": "92.40", "EUR": "100.00"}
DEMO_RATES_FROM = date(2025, 1, 1)
# Days rolled up before the demo starts. The demo's history goes back a year (app/demo/history.py), and a day's
# rollup costs a few dozen milliseconds, so a whole year would hold the start for many seconds: the last two
# weeks fill the dashboard's cards and recent charts (older days show as gaps until rolled up); the finance
# page counts from the payments whatever the rollup has not stored yet.
STARTUP_ROLLUP_DAYS = 14


async def prepare_demo_stats(session: AsyncSession, reporting_currency: str, now: datetime) -> None:
    if reporting_currency == "RUB" and not await session.scalar(select(func.count()).select_from(ExchangeRate)):
        for currency, rate in DEMO_RATES_RUB.items():
            await set_rate(session, currency, "RUB", DEMO_RATES_FROM, Decimal(rate))
    for day in (await days_to_roll_up(session, day_of(now)))[-STARTUP_ROLLUP_DAYS:]:
        await rollup_day(session, day, now)
