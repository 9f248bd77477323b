"""The daily rollup: one DailyStats row and DailyRevenue rows per day, from the figures in figures.py and
finance.py. The worker recomputes today (so far) and yesterday every run, and fills any days it missed, so the
history charts, the 30-day figures and the finance page never have to count raw rows on a page load; each run also
stores paid_history.py's snapshot (MRR, the months' movements and churn, trials, cohorts). Recomputing a day
replaces its rows: runs are idempotent and a second worker doing the same day writes the same numbers."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import insert_for, transaction
from app.models import DailyCheckouts, DailyRevenue, DailyStats, User
from app.stats import figures, finance, paid_history
from app.stats.periods import Span, day_of, mau_window

# How far back a first run (or a worker that was down) fills in: the finance page's longest look-back, twelve
# months shown and the twelve before them (a day it never stored would be counted from the payments on every load).
BACKFILL_DAYS = 2 * 366


async def rollup_day(session: AsyncSession, day: date, now: datetime) -> DailyStats:
    """Compute and store one day's figures; for today, as of `now`."""
    whole_day = Span.of_day(day)
    span = Span(whole_day.start, min(whole_day.end, now))
    first, last = mau_window(day)
    live = await figures.live_subscriptions(session, span.end)
    values = {
        "new_users": await figures.new_customers(session, span),
        "app_dau": await figures.active_by_app(session, day, day),
        "vpn_dau": await figures.active_by_vpn(session, day, day),
        "app_mau": await figures.active_by_app(session, first, last),
        "vpn_mau": await figures.active_by_vpn(session, first, last),
        "live_trial": live.trial,
        "live_paid": live.paid,
        "computed_at": now,
    }
    statement = insert_for(session, DailyStats).values(day=day, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["day"], set_=values))
    await session.execute(delete(DailyRevenue).where(DailyRevenue.day == day))
    lines: dict[tuple[str, str, int, str], figures.CurrencyRevenue] = {}
    for line in await finance.payment_lines(session, span):
        key = (line.item.currency, line.provider, line.plan_id or 0, line.method or "")  # the table's "none"s
        lines[key] = lines.get(key, figures.CurrencyRevenue(line.item.currency)) + line.item
    rows = [
        {
            "day": day,
            "currency": currency,
            "provider": provider,
            "plan_id": plan_id,
            "method": method,
            "payments": item.payments,
            "gross_minor": item.gross_minor,
            "refunds": item.refunds,
            "refunded_minor": item.refunded_minor,
        }
        for (currency, provider, plan_id, method), item in lines.items()
    ]
    if rows:
        await session.execute(insert_for(session, DailyRevenue), rows)
    await store_checkouts(session, day, now)
    return await session.get(DailyStats, day, populate_existing=True)  # type: ignore[return-value]


async def store_checkouts(session: AsyncSession, day: date, now: datetime) -> None:
    """Replace a day's daily_checkouts rows with the payments created that day, as they stand now."""
    span = Span(Span.of_day(day).start, min(Span.of_day(day).end, now))
    await session.execute(delete(DailyCheckouts).where(DailyCheckouts.day == day))
    rows = [
        {
            "day": day,
            "provider": row.provider,
            "method": row.method or "",
            "is_renewal": row.is_renewal,
            "created": row.created,
            "succeeded": row.succeeded,
        }
        for row in await finance.counted_checkouts(session, span)
    ]
    if rows:
        await session.execute(insert_for(session, DailyCheckouts), rows)


async def days_to_roll_up(session: AsyncSession, today: date) -> list[date]:
    """Yesterday and today, plus every day since the last day rolled up (or since the first customer, on a first
    run), at most BACKFILL_DAYS back."""
    latest = await session.scalar(select(func.max(DailyStats.day)).where(DailyStats.day < today))
    if latest is None:
        first_user = await session.scalar(select(func.min(User.created_at)))
        start = day_of(first_user) if first_user is not None else today
    else:
        start = latest  # it may have been rolled up before it ended
    start = max(min(start, today - timedelta(days=1)), today - timedelta(days=BACKFILL_DAYS - 1))
    return [start + timedelta(days=offset) for offset in range((today - start).days + 1)]


async def roll_up(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> list[date]:
    """The worker's run: every pending day, each in its own transaction so a long backfill holds no locks."""
    async with transaction(sessionmaker) as session:
        days = await days_to_roll_up(session, day_of(now))
    for day in days:
        async with transaction(sessionmaker) as session:
            await rollup_day(session, day, now)
    # Checkouts of the last days can still succeed (finance.SETTLE_DAYS): their counts are rewritten every run.
    today = day_of(now)
    unsettled = [today - timedelta(days=offset) for offset in range(finance.SETTLE_DAYS, 0, -1)]
    async with transaction(sessionmaker) as session:
        for day in unsettled:
            if day not in days:
                await store_checkouts(session, day, now)
    async with transaction(sessionmaker) as session:
        await paid_history.store_snapshot(session, await paid_history.compute_snapshot(session, now))
    return days
