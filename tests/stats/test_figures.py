"""Every dashboard figure on the planted shop of planted.py, against answers worked out by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import create_sessionmaker
from app.kit.clock import FrozenClock
from app.kit.money import Money
from app.models import DailyRevenue, DailyStats, OutboxMessage, OutboxStatus, Payment, PaymentRefund, RefundStatus
from app.stats import figures, overview
from app.stats.alerts import current_alerts
from app.stats.periods import Span
from app.stats.rollup import roll_up
from tests.factories import add_server
from tests.stats.planted import NOW, TODAY, YESTERDAY, at, plant_refund, plant_shop


@pytest.fixture(autouse=True)
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


async def test_customers_activity_and_subscriptions(db: AsyncSession) -> None:
    await plant_shop(db)
    # u3 and u4 joined today before noon; u2 and u6 yesterday (u6 one second before midnight).
    assert await figures.new_customers(db, Span(Span.of_day(TODAY).start, NOW)) == 2
    assert await figures.new_customers(db, Span.of_day(YESTERDAY)) == 2
    # Opened the app today: u1, u3; yesterday: u1, u2; in the 30 days to today: u1, u2, u3 and u4 (14 Feb is
    # the window's first day; u6's 13 Feb and u1's 10 Feb are outside it).
    assert await figures.active_by_app(db, TODAY, TODAY) == 2
    assert await figures.active_by_app(db, YESTERDAY, YESTERDAY) == 2
    assert await figures.active_by_app(db, date(2026, 2, 14), TODAY) == 4
    # Used the VPN today: u1 and u3 (two accounts, one customer); u2's zero row is not use. Yesterday: u1.
    # In the window: u1, u3 and u4 (14 Feb).
    assert await figures.active_by_vpn(db, TODAY, TODAY) == 2
    assert await figures.active_by_vpn(db, YESTERDAY, YESTERDAY) == 1
    assert await figures.active_by_vpn(db, date(2026, 2, 14), TODAY) == 3
    # Now: s1 paid, s2 trial (s3 cancelled at 10:00, s4 ended, the pending one and tomorrow's do not count).
    assert await figures.live_subscriptions(db, NOW) == figures.LiveSubscriptions(trial=1, paid=1)
    # At the end of yesterday s3 still gave access.
    assert await figures.live_subscriptions(db, at(3, 15)) == figures.LiveSubscriptions(trial=1, paid=2)
    # u1's account was seen 9 minutes ago; u2's 11 minutes ago is outside the window.
    assert await figures.online_now(db, NOW) == 1


async def test_revenue_per_currency(db: AsyncSession) -> None:
    await plant_shop(db)
    today = await figures.revenue(db, Span(Span.of_day(TODAY).start, NOW))
    # RUB: p1 199.00 in, p2's 299.00 refunded today (paid yesterday); the mismatch and the pending one never.
    assert today["RUB"] == figures.CurrencyRevenue("RUB", payments=1, gross_minor=199_00, refunds=1,
                                                   refunded_minor=299_00)  # fmt: skip
    assert today["RUB"].net == Money.of("-100", "RUB")
    assert today["XTR"].net == Money.of(150, "XTR")
    assert set(today) == {"RUB", "XTR"}
    yesterday = await figures.revenue(db, Span.of_day(YESTERDAY))
    assert yesterday == {"RUB": figures.CurrencyRevenue("RUB", payments=1, gross_minor=299_00)}
    month = await figures.revenue(db, Span(at(3, 1), NOW))
    # p7 was paid a minute before March.
    assert {currency: item.net for currency, item in month.items()} == {
        "RUB": Money.of(199, "RUB"),
        "USD": Money.of("2.99", "USD"),
        "XTR": Money.of(150, "XTR"),
    }


async def test_the_rollup_stores_each_day_and_reruns_only_the_last_two(db: AsyncSession, engine: AsyncEngine) -> None:
    await plant_shop(db)
    sessionmaker = create_sessionmaker(engine)
    # First run: from the first customer's day (1 March) to today.
    days = await roll_up(sessionmaker, NOW)
    assert days == [date(2026, 3, 1) + timedelta(days=offset) for offset in range(15)]
    rows = {row.day: row for row in await db.scalars(select(DailyStats))}
    assert len(rows) == 15
    y = rows[YESTERDAY]
    assert (y.new_users, y.app_dau, y.vpn_dau, y.live_trial, y.live_paid) == (2, 2, 1, 1, 2)
    # The 30 days to yesterday start on 13 Feb: app u1, u2, u4 and u6 (13 Feb); VPN u1 and u4.
    assert (y.app_mau, y.vpn_mau) == (4, 2)
    t = rows[TODAY]
    assert (t.new_users, t.app_dau, t.vpn_dau, t.app_mau, t.vpn_mau, t.live_trial, t.live_paid) == (2, 2, 2, 4, 3, 1, 1)
    assert rows[date(2026, 3, 5)].live_paid == 3  # s1, s3 and s4 (expired since, but live until 10 March)
    # Rows are per day, currency, provider, plan and method: summed per day and currency here.
    revenue: dict[tuple[date, str], tuple[int, int]] = {}
    for row in await db.scalars(select(DailyRevenue)):
        gross, refunded = revenue.get((row.day, row.currency), (0, 0))
        revenue[row.day, row.currency] = (gross + row.gross_minor, refunded + row.refunded_minor)
    assert set(revenue) == {(date(2026, 3, 2), "USD"), (YESTERDAY, "RUB"), (TODAY, "RUB"), (TODAY, "XTR")}
    assert revenue[TODAY, "RUB"] == (199_00, 299_00)

    # A second run redoes yesterday and today only, and writes the same numbers (compared by value: the rows
    # are the same objects once reloaded; by day: rows read without ORDER BY come back in any order).
    before = sorted((r.day, r.app_mau, r.live_paid) for r in rows.values())
    assert await roll_up(sessionmaker, NOW) == [YESTERDAY, TODAY]
    db.expire_all()
    again = {row.day: row for row in await db.scalars(select(DailyStats))}
    assert sorted((r.day, r.app_mau, r.live_paid) for r in again.values()) == before
    assert (
        await db.scalar(
            select(func.sum(DailyRevenue.payments)).where(DailyRevenue.day == TODAY, DailyRevenue.currency == "RUB")
        )
        == 1
    )

    # A worker down for three days fills them in on its next run.
    later = NOW + timedelta(days=3)
    assert await roll_up(sessionmaker, later) == [TODAY + timedelta(days=offset) for offset in range(4)]


async def _refund_p7_in_parts(db: AsyncSession) -> None:
    """p7 (1000.00 RUB, paid in February) refunded 100.00 yesterday and 250.00 today: still succeeded."""
    p7 = await db.scalar(select(Payment).where(Payment.public_id == "p7"))
    p7.refunded_minor = 350_00
    plant_refund(db, p7, 100_00, at(3, 14, 16))
    plant_refund(db, p7, 250_00, at(3, 15, 9, 30))
    # A refund still on its way back (requested, not done) is not revenue's business yet.
    db.add(
        PaymentRefund(public_id="p7-pending", payment_id=p7.id, amount_minor=50_00, currency="RUB",
                      status=RefundStatus.REQUESTED)
    )  # fmt: skip
    await db.commit()


async def test_partial_refunds_lower_revenue_on_the_day_each_one_succeeded(db: AsyncSession) -> None:
    await plant_shop(db)
    await _refund_p7_in_parts(db)
    today = await figures.revenue(db, Span(Span.of_day(TODAY).start, NOW))
    # RUB today: p1 199.00 in; out: p2's whole 299.00 and p7's second part 250.00.
    assert today["RUB"] == figures.CurrencyRevenue("RUB", payments=1, gross_minor=199_00, refunds=2,
                                                   refunded_minor=549_00)  # fmt: skip
    assert today["RUB"].net == Money.of(-350, "RUB")
    yesterday = await figures.revenue(db, Span.of_day(YESTERDAY))
    # p2 paid 299.00 yesterday; p7's first part (100.00) went back yesterday.
    assert yesterday == {"RUB": figures.CurrencyRevenue("RUB", payments=1, gross_minor=299_00, refunds=1,
                                                        refunded_minor=100_00)}  # fmt: skip
    month = await figures.revenue(db, Span(at(3, 1), NOW))
    # March: 199 + 299 in, 299 + 100 + 250 out (p7 itself was paid in February).
    assert month["RUB"].net == Money.of(-151, "RUB")


async def test_the_dashboard_counts_partial_refunds(db: AsyncSession, engine: AsyncEngine) -> None:
    await plant_shop(db)
    await _refund_p7_in_parts(db)
    await roll_up(create_sessionmaker(engine), NOW)
    figures_now = await overview.today(db, NOW, "RUB")
    # Today: -350.00 RUB + 150 Stars at 1.50 = -125.00 RUB; yesterday (rolled up): 299.00 - 100.00 = 199.00 RUB.
    assert figures_now.revenue_today.converted.money == Money.of(-125, "RUB")
    assert figures_now.revenue_yesterday.money == Money.of(199, "RUB")
    assert figures_now.revenue_month.by_currency["RUB"].net == Money.of(-151, "RUB")


async def test_the_dashboard_converts_revenue_with_each_days_rate(db: AsyncSession, engine: AsyncEngine) -> None:
    await plant_shop(db)
    await roll_up(create_sessionmaker(engine), NOW)
    figures_now = await overview.today(db, NOW, "RUB")
    # Today: -100.00 RUB + 150 Stars at today's 1.50 = 125.00 RUB.
    assert figures_now.revenue_today.converted.money == Money.of(125, "RUB")
    assert figures_now.revenue_today.converted.complete
    # Month: RUB 199.00 net, 150 Stars = 225.00 RUB; the 2 March USD payment has no rate (USD starts 10 March),
    # so the total leaves it out and says so.
    month = figures_now.revenue_month
    assert month.converted.money == Money.of(424, "RUB")
    assert month.converted.missing == {"USD"}
    assert {c: item.net for c, item in month.by_currency.items()} == {
        "RUB": Money.of(199, "RUB"), "USD": Money.of("2.99", "USD"), "XTR": Money.of(150, "XTR"),
    }  # fmt: skip
    # Yesterday: 299.00 RUB (the refund belongs to today).
    assert figures_now.revenue_yesterday.money == Money.of(299, "RUB")
    assert (figures_now.app_dau, figures_now.vpn_dau, figures_now.new_customers, figures_now.online_now) == (2, 2, 2, 1)
    assert figures_now.rolled_today is not None and figures_now.rolled_today.app_mau == 4


async def test_a_rate_for_every_day_makes_the_month_complete_rounded_once(
    db: AsyncSession, engine: AsyncEngine
) -> None:
    await plant_shop(db, usd_rate_from_march_1=True)
    await roll_up(create_sessionmaker(engine), NOW)
    month = (await overview.today(db, NOW, "RUB")).revenue_month.converted
    # 199.00 + 225.00 + 2.99 × 92.50 (= 276.575) = 700.575, rounded half up once: 700.58.
    assert month.complete
    assert month.money == Money.of("700.58", "RUB")


async def test_growth_series_from_the_rollup(db: AsyncSession, engine: AsyncEngine) -> None:
    await plant_shop(db, usd_rate_from_march_1=True)
    await roll_up(create_sessionmaker(engine), NOW)
    growth = await overview.growth(db, TODAY, 30, "RUB")
    assert len(growth.days) == 30 and growth.days[-1] == TODAY
    # Before 1 March there is no rollup: gaps, not zeros.
    assert growth.new_users[0] is None and growth.revenue[0] is None
    index = growth.days.index
    assert growth.new_users[index(YESTERDAY)] == 2
    assert growth.live_paid[index(date(2026, 3, 5))] == 3
    assert growth.revenue[index(date(2026, 3, 2))] == Decimal("276.58")  # 2.99 USD × 92.50
    assert growth.revenue[index(date(2026, 3, 3))] == Decimal(0)
    assert growth.revenue[index(TODAY)] == Decimal("125.00")
    with pytest.raises(ValueError):
        await overview.growth(db, TODAY, 7, "RUB")


async def test_alerts(db: AsyncSession) -> None:
    await plant_shop(db)
    server = await add_server(db, "down-nl", health="down")
    await add_server(db, "down-but-disabled", health="down", is_enabled=False)
    db.add_all(
        [
            OutboxMessage(topic="t", payload={}, status=OutboxStatus.PENDING, available_at=NOW - timedelta(minutes=11)),
            OutboxMessage(topic="t", payload={}, status=OutboxStatus.PENDING, available_at=NOW - timedelta(minutes=9)),
            OutboxMessage(topic="t", payload={}, status=OutboxStatus.DEAD, available_at=NOW - timedelta(days=1)),
        ]
    )
    alerts = await current_alerts(db, NOW)
    # p4 is the one mismatch; nothing has failed to renew yet.
    assert (alerts.mismatches, alerts.failed_renewals, alerts.outbox_overdue, alerts.outbox_dead) == (1, 0, 1, 1)
    assert alerts.servers_down == (server.name,)
    assert alerts.raised
