"""Figures of the paid history (ADMIN.md "Numbers that must be right"), before conversion into the reporting
currency, and the snapshot of them the worker stores (finance_months, mrr_days).

- Paid access: a non-trial subscription with at least one succeeded payment, from starts_at to ends_at (or
  cancelled_at). Staff grants, trials and bonus days alone are never paid access.
- A payment's monthly value: its amount ÷ its months (days ÷ 30.4375, rounded, at least one), so a year's plan
  counts a twelfth. MRR at an instant: the monthly value of the latest payment (not refunded by then) of every
  live paid subscription; the paying customers are their owners.
- MRR movements of a month: new (customers' first-ever payments in it), renewed (every other payment in it),
  churned (the last monthly value of the customers who churned in it).
- Churn (monthly, logo): customers paying at the month's start whose paid access ended in the month and who did
  not pay again within GRACE after it ended (decided once GRACE has passed), ÷ customers paying at its start.
- Trial → paid: per month of trial start, the trial customers whose first payment came within TRIAL_DAYS of the
  trial's start.
- Cohort retention: customers by month of their first payment; month k retains those with paid access at some
  instant of the k-th month after it.

These need every paid payment and subscription of two years: seconds of work with 100,000 customers. The worker
computes them every quarter hour (`compute_snapshot` + `store_snapshot`, from app/stats/rollup.py) and the finance
page reads the stored snapshot, computing one itself only when none covers the current month yet.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import insert_for
from app.models import FinanceMonth, MrrDay, Payment, Subscription, SubscriptionStatus
from app.stats import figures
from app.stats.periods import Span, add_months, day_of, day_start, month_start

# After paid access ends, a customer who pays within this time has not churned.
GRACE = timedelta(days=7)
# A trial converts when the customer's first payment comes within this many days of the trial's start.
TRIAL_DAYS = 30
# Months shown in the MRR movements, churn, trial and cohort tables.
HISTORY_MONTHS = 12
DAYS_PER_MONTH = Decimal("30.4375")

Amounts = dict[str, Decimal]  # minor units per currency (a monthly value can be fractional)


def months_of(days: int) -> int:
    """A payment's length in months: 30 days is one, 90 three, 365 twelve."""
    return max(1, int((Decimal(days) / DAYS_PER_MONTH).quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def shown_months(today: date) -> list[date]:
    """The HISTORY_MONTHS month starts ending with today's month, oldest first."""
    return [add_months(month_start(today), offset) for offset in range(1 - HISTORY_MONTHS, 1)]


@dataclass(frozen=True, slots=True)
class PaidPayment:
    user_id: int
    subscription_id: int | None
    paid_at: datetime
    refunded_at: datetime | None
    monthly_minor: Decimal  # the amount ÷ its months
    currency: str


@dataclass(frozen=True, slots=True)
class Access:
    """A paid subscription's access: [start, end)."""

    subscription_id: int
    user_id: int
    start: datetime
    end: datetime


@dataclass(slots=True)
class History:
    """Every paid payment and paid access, loaded once per snapshot."""

    payments: list[PaidPayment]
    access: list[Access]
    first_paid: dict[int, datetime]  # user → their first payment ever
    by_user: dict[int, list[Access]] = field(default_factory=dict)
    payments_by_user: dict[int, list[PaidPayment]] = field(default_factory=dict)
    payments_by_subscription: dict[int, list[PaidPayment]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for access in sorted(self.access, key=lambda a: a.start):
            self.by_user.setdefault(access.user_id, []).append(access)
        for payment in sorted(self.payments, key=lambda p: p.paid_at):
            self.payments_by_user.setdefault(payment.user_id, []).append(payment)
            if payment.subscription_id is not None:
                self.payments_by_subscription.setdefault(payment.subscription_id, []).append(payment)

    def live_at(self, moment: datetime) -> list[Access]:
        return [a for a in self.access if a.start <= moment < a.end and self.price_at(a, moment) is not None]

    def price_at(self, access: Access, moment: datetime) -> PaidPayment | None:
        """The subscription's latest payment made by `moment` and not refunded by then."""
        found = None
        for payment in self.payments_by_subscription.get(access.subscription_id, ()):
            if payment.paid_at > moment:
                break
            if payment.refunded_at is None or payment.refunded_at > moment:
                found = payment
        return found

    def paying_at(self, moment: datetime) -> dict[int, Access]:
        return {access.user_id: access for access in self.live_at(moment)}

    def access_end(self, user_id: int, moment: datetime) -> datetime:
        """When the user's paid access that covers `moment` runs out (back-to-back subscriptions joined)."""
        end = moment
        for access in self.by_user.get(user_id, ()):
            if access.start <= end < access.end:
                end = access.end
        return end

    def paid_between(self, user_id: int, start: datetime, end: datetime) -> bool:
        return any(start <= p.paid_at < end for p in self.payments_by_user.get(user_id, ()))

    def had_access(self, user_id: int, span: Span) -> bool:
        return any(a.start < span.end and a.end > span.start for a in self.by_user.get(user_id, ()))


async def load_history(session: AsyncSession, since: datetime) -> History:
    """Paid payments since `since` (and each customer's first payment ever), and the access they bought."""
    paid_rows = await session.execute(
        select(
            Payment.user_id,
            Payment.subscription_id,
            Payment.paid_at,
            Payment.refunded_at,
            Payment.amount_minor,
            Payment.currency,
            Payment.days,
            figures.refunded_minor(),
        ).where(Payment.status.in_(figures.PAID_STATUSES), Payment.paid_at >= since)
    )
    payments = [
        PaidPayment(user, subscription, paid, refunded_at if refunded else None, Decimal(amount) / months_of(days), cur)
        for user, subscription, paid, refunded_at, amount, cur, days, refunded in paid_rows
    ]
    ends = case(
        (
            Subscription.status == SubscriptionStatus.CANCELLED,
            func.coalesce(Subscription.cancelled_at, Subscription.ends_at),
        ),
        else_=Subscription.ends_at,
    )
    paid_subscription = select(Payment.subscription_id).where(Payment.status.in_(figures.PAID_STATUSES))
    access_rows = await session.execute(
        select(Subscription.id, Subscription.user_id, Subscription.starts_at, ends).where(
            ~Subscription.is_trial,
            Subscription.status != SubscriptionStatus.PENDING,
            Subscription.id.in_(paid_subscription.scalar_subquery()),
            Subscription.starts_at < Subscription.ends_at,
        )
    )
    access = [Access(sid, user, start, end) for sid, user, start, end in access_rows if end is not None]
    first_rows = await session.execute(
        select(Payment.user_id, func.min(Payment.paid_at))
        .where(Payment.status.in_(figures.PAID_STATUSES))
        .group_by(Payment.user_id)
    )
    return History(payments, access, {user: first for user, first in first_rows})


# --- one month and MRR, in minor units per currency -------------------------------------------------------------


@dataclass(slots=True)
class MonthTotals:
    """One calendar month's figures before conversion: a finance_months row."""

    month: date
    new: int = 0
    new_mrr: Amounts = field(default_factory=dict)
    renewed: int = 0
    renewed_mrr: Amounts = field(default_factory=dict)
    paying_at_start: int = 0
    churned: int = 0
    churned_mrr: Amounts = field(default_factory=dict)
    trials_started: int = 0
    trials_converted: int = 0
    cohort_size: int = 0
    cohort_retained: list[int] = field(default_factory=list)  # month 0, 1, … after the first payment, up to now


def _add(amounts: Amounts, payment: PaidPayment) -> None:
    amounts[payment.currency] = amounts.get(payment.currency, Decimal(0)) + payment.monthly_minor


def movements_and_churn(history: History, totals: MonthTotals, now: datetime) -> None:
    span = Span(day_start(totals.month), day_start(add_months(totals.month, 1)))
    for payment in history.payments:
        if span.start <= payment.paid_at < span.end:
            if history.first_paid.get(payment.user_id) == payment.paid_at:
                totals.new += 1
                _add(totals.new_mrr, payment)
            else:
                totals.renewed += 1
                _add(totals.renewed_mrr, payment)
    paying = history.paying_at(span.start)
    totals.paying_at_start = len(paying)
    for user_id, access in paying.items():
        end = history.access_end(user_id, span.start)
        if end >= span.end or end + GRACE > now or history.paid_between(user_id, end, end + GRACE):
            continue
        totals.churned += 1
        price = history.price_at(access, span.start)
        if price is not None:
            _add(totals.churned_mrr, price)


async def trial_conversion(session: AsyncSession, history: History, months: dict[date, MonthTotals]) -> None:
    first = day_start(min(months))
    rows = await session.execute(
        select(Subscription.user_id, func.min(Subscription.starts_at))
        .where(Subscription.is_trial, Subscription.status != SubscriptionStatus.PENDING)
        .group_by(Subscription.user_id)
    )
    for user_id, trial_start in rows:
        totals = months.get(month_start(day_of(trial_start))) if trial_start >= first else None
        if totals is None:
            continue
        totals.trials_started += 1
        paid = history.first_paid.get(user_id)
        if paid is not None and trial_start <= paid < trial_start + timedelta(days=TRIAL_DAYS):
            totals.trials_converted += 1


def cohort_retention(history: History, months: dict[date, MonthTotals], today: date) -> None:
    members: dict[date, list[int]] = defaultdict(list)
    for user_id, first in history.first_paid.items():
        members[month_start(day_of(first))].append(user_id)
    for month, totals in months.items():
        totals.cohort_size = len(members[month])
        k_month = month
        while k_month <= month_start(today):
            span = Span(day_start(k_month), day_start(add_months(k_month, 1)))
            totals.cohort_retained.append(sum(1 for user_id in members[month] if history.had_access(user_id, span)))
            k_month = add_months(k_month, 1)


def mrr_at(history: History, moment: datetime) -> tuple[Amounts, int]:
    """MRR at an instant per currency, and the customers paying then."""
    amounts: Amounts = {}
    paying = history.live_at(moment)
    for access in paying:
        price = history.price_at(access, moment)
        assert price is not None  # live_at keeps only priced access
        _add(amounts, price)
    return amounts, len({access.user_id for access in paying})


# --- the snapshot -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Snapshot:
    """The months shown and MRR, as of `at`."""

    at: datetime
    months: list[MonthTotals]
    mrr: Amounts
    paying: int


async def compute_snapshot(session: AsyncSession, now: datetime) -> Snapshot:
    months = {month: MonthTotals(month) for month in shown_months(day_of(now))}
    # Paid access bought up to a year before the first month shown can still be live in it.
    history = await load_history(session, day_start(add_months(min(months), -13)))
    for totals in months.values():
        movements_and_churn(history, totals, now)
    await trial_conversion(session, history, months)
    cohort_retention(history, months, day_of(now))
    mrr, paying = mrr_at(history, now)
    return Snapshot(now, list(months.values()), mrr, paying)


def _json(amounts: Amounts) -> dict[str, str]:
    return {currency: str(minor) for currency, minor in sorted(amounts.items())}


def _amounts(stored: dict[str, str]) -> Amounts:
    return {currency: Decimal(minor) for currency, minor in stored.items()}


async def store_snapshot(session: AsyncSession, snapshot: Snapshot) -> None:
    """Replace the stored months and today's MRR with these (a second worker storing the same moment's is harmless)."""
    for totals in snapshot.months:
        values = {
            "new": totals.new,
            "new_mrr": _json(totals.new_mrr),
            "renewed": totals.renewed,
            "renewed_mrr": _json(totals.renewed_mrr),
            "paying_at_start": totals.paying_at_start,
            "churned": totals.churned,
            "churned_mrr": _json(totals.churned_mrr),
            "trials_started": totals.trials_started,
            "trials_converted": totals.trials_converted,
            "cohort_size": totals.cohort_size,
            "cohort_retained": totals.cohort_retained,
            "computed_at": snapshot.at,
        }
        statement = insert_for(session, FinanceMonth).values(month=totals.month, **values)
        await session.execute(statement.on_conflict_do_update(index_elements=["month"], set_=values))
    values = {"by_currency": _json(snapshot.mrr), "paying": snapshot.paying, "computed_at": snapshot.at}
    statement = insert_for(session, MrrDay).values(day=day_of(snapshot.at), **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["day"], set_=values))


async def load_snapshot(session: AsyncSession, now: datetime) -> Snapshot | None:
    """The stored snapshot of the months shown at `now`, or None when the worker has not stored them all (a first
    run still to come, or a month begun since its last run)."""
    months = shown_months(day_of(now))
    rows = {
        row.month: row for row in await session.scalars(select(FinanceMonth).where(FinanceMonth.month >= months[0]))
    }
    mrr = await session.scalar(select(MrrDay).order_by(MrrDay.day.desc()).limit(1))
    if mrr is None or any(month not in rows for month in months):
        return None
    return Snapshot(
        mrr.computed_at,
        [
            MonthTotals(
                month,
                row.new,
                _amounts(row.new_mrr),
                row.renewed,
                _amounts(row.renewed_mrr),
                row.paying_at_start,
                row.churned,
                _amounts(row.churned_mrr),
                row.trials_started,
                row.trials_converted,
                row.cohort_size,
                list(row.cohort_retained),
            )
            for month in months
            for row in [rows[month]]
        ],
        _amounts(mrr.by_currency),
        mrr.paying,
    )


async def snapshot(session: AsyncSession, now: datetime) -> Snapshot:
    """The stored snapshot, or one computed now when none covers the months shown."""
    return await load_snapshot(session, now) or await compute_snapshot(session, now)
