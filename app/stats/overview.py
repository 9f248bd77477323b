"""The dashboard's figures: today's computed live, the 30-day figures and the history from the rollup, revenue in
each currency and in the reporting currency."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import DailyRevenue, DailyStats
from app.stats import figures
from app.stats.periods import Span, day_of, month_start
from app.stats.rates import Converted, RateBook, convert, load_rates

GROWTH_PERIODS = (30, 90, 365)


@dataclass(frozen=True, slots=True)
class Revenue:
    """A period's revenue per currency and converted into the reporting currency."""

    by_currency: dict[str, figures.CurrencyRevenue]
    converted: Converted


@dataclass(frozen=True, slots=True)
class Today:
    day: date
    now: datetime
    new_customers: int
    app_dau: int
    vpn_dau: int
    live: figures.LiveSubscriptions
    online_now: int
    revenue_today: Revenue
    revenue_month: Revenue
    # The rollup's row for today (its 30-day figures, as of its computed_at) and yesterday's, for the changes.
    rolled_today: DailyStats | None
    yesterday: DailyStats | None
    revenue_yesterday: Converted


def _revenue_rows(rows: Iterable[DailyRevenue]) -> list[tuple[date, figures.CurrencyRevenue]]:
    return [
        (row.day, figures.CurrencyRevenue(row.currency, row.payments, row.gross_minor, row.refunds, row.refunded_minor))
        for row in rows
    ]


def _sum(book: RateBook, dated: list[tuple[date, figures.CurrencyRevenue]]) -> Revenue:
    by_currency: dict[str, figures.CurrencyRevenue] = {}
    for _day, item in dated:
        by_currency[item.currency] = by_currency.get(item.currency, figures.CurrencyRevenue(item.currency)) + item
    converted = convert(book, ((day, item.currency, item.net_minor) for day, item in dated))
    return Revenue(dict(sorted(by_currency.items())), converted)


async def today(session: AsyncSession, now: datetime, reporting_currency: str) -> Today:
    day = day_of(now)
    span = Span(Span.of_day(day).start, now)
    live_revenue = [(day, item) for item in (await figures.revenue(session, span)).values()]
    first_of_month = month_start(day)
    yesterday = day - timedelta(days=1)
    earlier = _revenue_rows(
        await session.scalars(
            select(DailyRevenue).where(DailyRevenue.day >= min(first_of_month, yesterday), DailyRevenue.day < day)
        )
    )
    book = await load_rates(session, reporting_currency)
    rolled = {
        row.day: row for row in await session.scalars(select(DailyStats).where(DailyStats.day.in_([day, yesterday])))
    }
    return Today(
        day=day,
        now=now,
        new_customers=await figures.new_customers(session, span),
        app_dau=await figures.active_by_app(session, day, day),
        vpn_dau=await figures.active_by_vpn(session, day, day),
        live=await figures.live_subscriptions(session, now),
        online_now=await figures.online_now(session, now),
        revenue_today=_sum(book, live_revenue),
        revenue_month=_sum(book, [row for row in earlier if row[0] >= first_of_month] + live_revenue),
        rolled_today=rolled.get(day),
        yesterday=rolled.get(yesterday),
        revenue_yesterday=_sum(book, [row for row in earlier if row[0] == yesterday]).converted,
    )


@dataclass(frozen=True, slots=True)
class Growth:
    """Daily series for the charts, one value per day from `days[0]` to today (days the rollup has not reached
    yet are None, so a chart shows a gap rather than a false zero)."""

    days: list[date]
    new_users: list[int | None]
    app_dau: list[int | None]
    vpn_dau: list[int | None]
    live_trial: list[int | None]
    live_paid: list[int | None]
    revenue: list[Decimal | None]
    currency: str
    missing_rates: set[str]


async def growth(session: AsyncSession, today_: date, days: int, reporting_currency: str) -> Growth:
    if days not in GROWTH_PERIODS:
        raise ValueError(f"growth period must be one of {GROWTH_PERIODS}")
    first = today_ - timedelta(days=days - 1)
    span = [first + timedelta(days=offset) for offset in range(days)]
    stats = {row.day: row for row in await session.scalars(select(DailyStats).where(DailyStats.day >= first))}
    dated = _revenue_rows(await session.scalars(select(DailyRevenue).where(DailyRevenue.day >= first)))
    book = await load_rates(session, reporting_currency, {item.currency for _day, item in dated})
    per_day: dict[date, list[tuple[date, str, int]]] = {}
    for day, item in dated:
        per_day.setdefault(day, []).append((day, item.currency, item.net_minor))
    converted = {day: convert(book, amounts) for day, amounts in per_day.items()}
    missing = set().union(*(value.missing for value in converted.values())) if converted else set()

    def series(name: str) -> list[int | None]:
        return [getattr(stats[day], name) if day in stats else None for day in span]

    return Growth(
        days=span,
        new_users=series("new_users"),
        app_dau=series("app_dau"),
        vpn_dau=series("vpn_dau"),
        live_trial=series("live_trial"),
        live_paid=series("live_paid"),
        revenue=[
            converted[day].money.amount if day in converted else (Decimal(0) if day in stats else None) for day in span
        ],
        currency=reporting_currency,
        missing_rates=missing,
    )
