"""Every business figure the dashboard shows, defined once. The rollup stores them per finished day and the
dashboard computes today's live, both by calling these functions, so history and today cannot disagree.

Definitions (ADMIN.md "Numbers that must be right"; a "day" is a UTC day, see periods.py):
- new customers: users created in the span;
- active by app: distinct customers with an activity-record row on a day of the range (opened the Mini App,
  the browser cabinet or the bot that day);
- active by VPN: distinct customers with traffic that day in usage_daily (the panel sync's per-day growth);
- live subscriptions at an instant: started, not yet ended, and not cancelled by then; trial ones are
  `is_trial`; pending checkouts never count;
- revenue: provider payments that succeeded in the span (by paid_at; a payment refunded later did succeed),
  minus the refunds that succeeded in the span, whole or partial, each by its own time (`app/payments/refunds`,
  the one place that says how much of a payment went back). Trials, bonus, referral and promo days and staff
  grants are not payments and never count; neither does a mismatch (the money does not match the order);
- online now: VPN accounts their panel saw online in the last ONLINE_WINDOW.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.money import Money
from app.models import (
    Payment,
    PaymentStatus,
    Subscription,
    SubscriptionStatus,
    UsageDaily,
    User,
    UserActivityDay,
    VpnAccount,
)
from app.payments import refunds
from app.stats.periods import Span

# A panel counts a user online for about 5 minutes after their last packet (Remnawave's onlineNow), and our
# sync reads it every 5 minutes, so "online now" looks 10 minutes back.
ONLINE_WINDOW = timedelta(minutes=10)

# A payment in either status succeeded at paid_at; its refunds are subtracted when each of them succeeded.
PAID_STATUSES = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
# Statuses that gave access at some time; a cancelled subscription stopped at cancelled_at.
_ACCESS_STATUSES = (SubscriptionStatus.TRIAL, SubscriptionStatus.ACTIVE, SubscriptionStatus.EXPIRED)


def refunded_minor():  # type: ignore[no-untyped-def]  (a SQL expression)
    """How much of a payment went back so far, whole or in parts, in its minor units (kept by
    app/payments/refunds.settle): what per-payment figures (a promo code's or a referrer's net revenue) subtract.
    Figures over time take each refund at its own time instead (refunds.refunds_in, finance.revenue_lines)."""
    return Payment.refunded_minor


async def new_customers(session: AsyncSession, span: Span) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(User).where(User.created_at >= span.start, User.created_at < span.end)
        )
        or 0
    )


async def active_by_app(session: AsyncSession, first: date, last: date) -> int:
    """Distinct customers who opened the app on a day from `first` to `last` (inclusive)."""
    column = UserActivityDay.user_id
    counted = func.count() if first == last else func.count(column.distinct())
    return (
        await session.scalar(
            select(counted)
            .select_from(UserActivityDay)
            .where(UserActivityDay.day >= first, UserActivityDay.day <= last)
        )
        or 0
    )


async def active_by_vpn(session: AsyncSession, first: date, last: date) -> int:
    """Distinct customers with VPN traffic on a day from `first` to `last` (inclusive)."""
    return (
        await session.scalar(
            select(func.count(UsageDaily.user_id.distinct())).where(
                UsageDaily.day >= first,
                UsageDaily.day <= last,
                # A literal zero, so PostgreSQL matches the partial index ix_usage_daily_day_user_id's condition.
                UsageDaily.upload_bytes + UsageDaily.download_bytes > literal_column("0"),
            )
        )
        or 0
    )


def live_at(moment: datetime):  # type: ignore[no-untyped-def]  (a SQL condition)
    """The condition for a subscription giving access at `moment`."""
    return and_(
        Subscription.starts_at <= moment,
        Subscription.ends_at > moment,
        or_(
            Subscription.status.in_(_ACCESS_STATUSES),
            and_(Subscription.status == SubscriptionStatus.CANCELLED, Subscription.cancelled_at > moment),
        ),
    )


@dataclass(frozen=True, slots=True)
class LiveSubscriptions:
    trial: int
    paid: int

    @property
    def total(self) -> int:
        return self.trial + self.paid


async def live_subscriptions(session: AsyncSession, moment: datetime) -> LiveSubscriptions:
    trial, paid = (
        await session.execute(
            select(func.count(case((Subscription.is_trial, 1))), func.count(case((~Subscription.is_trial, 1)))).where(
                live_at(moment)
            )
        )
    ).one()
    return LiveSubscriptions(trial=trial or 0, paid=paid or 0)


@dataclass(frozen=True, slots=True)
class CurrencyRevenue:
    """One currency's revenue over a span, in minor units."""

    currency: str
    payments: int = 0
    gross_minor: int = 0
    refunds: int = 0
    refunded_minor: int = 0

    @property
    def net_minor(self) -> int:
        return self.gross_minor - self.refunded_minor

    @property
    def net(self) -> Money:
        return Money.from_minor(self.net_minor, self.currency)

    def __add__(self, other: CurrencyRevenue) -> CurrencyRevenue:
        assert other.currency == self.currency
        return CurrencyRevenue(
            self.currency,
            self.payments + other.payments,
            self.gross_minor + other.gross_minor,
            self.refunds + other.refunds,
            self.refunded_minor + other.refunded_minor,
        )


async def revenue(session: AsyncSession, span: Span) -> dict[str, CurrencyRevenue]:
    """Revenue over the span per currency (only currencies with a payment or a refund in it)."""
    paid = await session.execute(
        select(Payment.currency, func.count(), func.sum(Payment.amount_minor))
        .where(Payment.status.in_(PAID_STATUSES), Payment.paid_at >= span.start, Payment.paid_at < span.end)
        .group_by(Payment.currency)
    )
    totals: dict[str, CurrencyRevenue] = {}
    for currency, count, amount in paid:
        totals[currency] = CurrencyRevenue(currency, payments=count, gross_minor=int(amount or 0))
    for currency, (count, amount) in (await refunds.refunds_in(session, span.start, span.end)).items():
        totals[currency] = totals.get(currency, CurrencyRevenue(currency)) + CurrencyRevenue(
            currency, refunds=count, refunded_minor=amount
        )
    return dict(sorted(totals.items()))


async def online_now(session: AsyncSession, now: datetime) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(VpnAccount).where(VpnAccount.online_at >= now - ONLINE_WINDOW)
        )
        or 0
    )
