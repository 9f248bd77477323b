"""The finance page's figures (ADMIN.md "Numbers that must be right"), each defined once, here or in figures.py.

- Revenue: figures.py's rule (succeeded provider payments by paid_at, minus refunds by refunded_at, the refunded
  amount being `figures.refunded_minor()`), grouped by UTC day, plan, provider, method and currency; converted
  into the reporting currency at each day's rate (rates.py: a missing rate is named, never guessed).
- Paid access: a non-trial subscription with at least one succeeded payment, from starts_at to ends_at (or
  cancelled_at). Staff grants, trials and bonus days alone are never paid access.
- A payment's monthly value: its amount ÷ its months (days ÷ 30.4375, rounded, at least one), so a year's plan
  counts a twelfth. MRR at an instant: the monthly value of the latest payment (not refunded by then) of every
  live paid subscription. ARPPU: MRR ÷ customers paying at that instant.
- MRR movements of a month: new (customers' first-ever payments in it), renewed (every other payment in it),
  churned (the last monthly value of the customers who churned in it).
- Churn (monthly, logo): customers paying at the month's start whose paid access ended in the month and who did
  not pay again within GRACE after it ended (decided once GRACE has passed), ÷ customers paying at its start.
  LTV: ARPPU ÷ the churn of the last LTV_MONTHS complete months (churned ÷ paying at their starts, summed).
- Trial → paid: per month of trial start, the share of trial customers whose first payment came within
  TRIAL_DAYS of the trial's start.
- Cohort retention: customers by month of their first payment; month k retains those with paid access at some
  instant of the k-th month after it.
- Payment success rate: payments that succeeded ÷ payments created (checkouts), by created_at, per provider and
  method; the renewal success rate is the same over automatic renewal charges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.money import exponent
from app.models import ExchangeRate, Payment, PaymentRefund, Plan, RefundStatus, Subscription, SubscriptionStatus
from app.stats import figures
from app.stats.periods import Span, day_of, day_start, month_start
from app.stats.rates import Converted, RateBook, convert, load_rates

# How many buckets the revenue chart shows per granularity (and as many before them, the previous period).
GRANULARITIES: dict[str, int] = {"day": 30, "week": 12, "month": 12}
# After paid access ends, a customer who pays within this time has not churned.
GRACE = timedelta(days=7)
# A trial converts when the customer's first payment comes within this many days of the trial's start.
TRIAL_DAYS = 30
# Months shown in the MRR movements, churn, trial and cohort tables.
HISTORY_MONTHS = 12
# Complete months whose churn gives LTV.
LTV_MONTHS = 3
DAYS_PER_MONTH = Decimal("30.4375")


def months_of(days: int) -> int:
    """A payment's length in months: 30 days is one, 90 three, 365 twelve."""
    return max(1, int((Decimal(days) / DAYS_PER_MONTH).quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def utc_day(session: AsyncSession, column):  # type: ignore[no-untyped-def]  (a SQL expression)
    """The UTC calendar day of a timestamp column (periods.py's day), in the session's dialect. The time zone is
    a literal, not a parameter, so PostgreSQL sees the same expression in SELECT and GROUP BY."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone(literal_column("'UTC'"), column))
    return func.date(column)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def bucket_of(day: date, granularity: str) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return month_start(day)
    return day


def next_bucket(start: date, granularity: str) -> date:
    if granularity == "week":
        return start + timedelta(days=7)
    if granularity == "month":
        return add_months(start, 1)
    return start + timedelta(days=1)


def bucket_starts(today: date, granularity: str, count: int) -> list[date]:
    """The starts of the `count` buckets ending with today's, oldest first."""
    starts = [bucket_of(today, granularity)]
    for _ in range(count - 1):
        starts.insert(0, bucket_of(starts[0] - timedelta(days=1), granularity))
    return starts


# --- revenue --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """Revenue of one UTC day, plan, provider, method and currency."""

    day: date
    plan_id: int | None
    provider: str
    method: str | None
    item: figures.CurrencyRevenue


async def revenue_lines(session: AsyncSession, span: Span) -> list[Line]:
    """Revenue over the span (figures.revenue's rule), per day, plan, provider, method and currency."""
    keys = (Payment.plan_id, Payment.provider, Payment.method, Payment.currency)
    paid_day = utc_day(session, Payment.paid_at)
    paid = await session.execute(
        select(paid_day, *keys, func.count(), func.sum(Payment.amount_minor))
        .where(Payment.status.in_(figures.PAID_STATUSES), Payment.paid_at >= span.start, Payment.paid_at < span.end)
        .group_by(paid_day, *keys)
    )
    # Each refund, whole or partial, on the day it succeeded (as figures.revenue counts it).
    refund_day = utc_day(session, PaymentRefund.succeeded_at)
    refunded = await session.execute(
        select(refund_day, *keys, func.count(), func.sum(PaymentRefund.amount_minor))
        .join(Payment, Payment.id == PaymentRefund.payment_id)
        .where(
            PaymentRefund.status == RefundStatus.SUCCEEDED,
            PaymentRefund.succeeded_at >= span.start,
            PaymentRefund.succeeded_at < span.end,
        )
        .group_by(refund_day, *keys)
    )
    lines = [
        Line(_as_date(day), plan, provider, method, figures.CurrencyRevenue(currency, count, int(amount or 0)))
        for day, plan, provider, method, currency, count, amount in paid
    ]
    lines += [
        Line(_as_date(day), plan, provider, method, figures.CurrencyRevenue(currency, 0, 0, count, int(amount or 0)))
        for day, plan, provider, method, currency, count, amount in refunded
    ]
    return lines


@dataclass(slots=True)
class Breakdown:
    """Revenue of one plan, provider, method or currency: per currency, and in the reporting currency."""

    key: str
    by_currency: dict[str, figures.CurrencyRevenue]
    converted: Converted

    @property
    def payments(self) -> int:
        return sum(item.payments for item in self.by_currency.values())

    @property
    def refunds(self) -> int:
        return sum(item.refunds for item in self.by_currency.values())


def summarise(book: RateBook, lines: Iterable[Line], key: str = "") -> Breakdown:
    lines = list(lines)
    by_currency: dict[str, figures.CurrencyRevenue] = {}
    for line in lines:
        currency = line.item.currency
        by_currency[currency] = by_currency.get(currency, figures.CurrencyRevenue(currency)) + line.item
    converted = convert(book, ((line.day, line.item.currency, line.item.net_minor) for line in lines))
    return Breakdown(key, dict(sorted(by_currency.items())), converted)


def breakdown(book: RateBook, lines: list[Line], key_of) -> list[Breakdown]:  # type: ignore[no-untyped-def]
    groups: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        groups[key_of(line)].append(line)
    rows = [summarise(book, group, key) for key, group in groups.items()]
    return sorted(rows, key=lambda row: (-row.converted.amount, row.key))


@dataclass(slots=True)
class RevenueSeries:
    granularity: str
    buckets: list[date]  # the current period's bucket starts, oldest first (the last one is today's, so far)
    current: list[Converted]
    previous: list[Converted]  # the same number of buckets just before
    total: Breakdown
    previous_total: Breakdown


def revenue_series(book: RateBook, lines: list[Line], today: date, granularity: str) -> RevenueSeries:
    count = GRANULARITIES[granularity]
    starts = bucket_starts(today, granularity, 2 * count)
    per_bucket: dict[date, list[Line]] = defaultdict(list)
    for line in lines:
        per_bucket[bucket_of(line.day, granularity)].append(line)
    series = [summarise(book, per_bucket.get(start, ())).converted for start in starts]
    current_lines = [line for line in lines if line.day >= starts[count]]
    previous_lines = [line for line in lines if starts[0] <= line.day < starts[count]]
    return RevenueSeries(
        granularity,
        starts[count:],
        series[count:],
        series[:count],
        summarise(book, current_lines),
        summarise(book, previous_lines),
    )


# --- paid access, MRR, churn, cohorts ---------------------------------------------------------------------------


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
    """Every paid payment and paid access, loaded once per page."""

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


def _convert_minor(book: RateBook, day: date, amounts: dict[str, Decimal]) -> Converted:
    """Converted sum of (possibly fractional) minor units per currency, all at one day's rate."""
    total = Converted(book.quote)
    for currency, minor in sorted(amounts.items()):
        rate = book.rate(currency, day)
        if rate is None:
            total.missing.add(currency)
            continue
        total.amount += minor.scaleb(-exponent(currency)) * rate
    return total


@dataclass(slots=True)
class Mrr:
    at: datetime
    by_currency: dict[str, Decimal]  # minor units (a monthly value can be fractional)
    converted: Converted
    paying: int

    @property
    def arppu(self) -> Decimal | None:
        return self.converted.amount / self.paying if self.paying else None


def mrr_at(book: RateBook, history: History, moment: datetime) -> Mrr:
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    paying = history.live_at(moment)
    for access in paying:
        price = history.price_at(access, moment)
        assert price is not None  # live_at keeps only priced access
        amounts[price.currency] += price.monthly_minor
    return Mrr(moment, dict(amounts), _convert_minor(book, day_of(moment), amounts), len({a.user_id for a in paying}))


@dataclass(slots=True)
class MonthFigures:
    """One calendar month: MRR movements and logo churn."""

    month: date
    new: int
    new_mrr: Converted
    renewed: int
    renewed_mrr: Converted
    paying_at_start: int
    churned: int
    churned_mrr: Converted
    complete: bool  # the month (and the churn grace after it) is over

    @property
    def churn(self) -> Decimal | None:
        return Decimal(self.churned) / self.paying_at_start if self.paying_at_start else None


def month_figures(book: RateBook, history: History, month: date, now: datetime) -> MonthFigures:
    span = Span(day_start(month), day_start(add_months(month, 1)))
    new: dict[str, Decimal] = defaultdict(Decimal)
    renewed: dict[str, Decimal] = defaultdict(Decimal)
    counts = {"new": 0, "renewed": 0}
    for payment in history.payments:
        if span.start <= payment.paid_at < span.end:
            first = history.first_paid.get(payment.user_id) == payment.paid_at
            (new if first else renewed)[payment.currency] += payment.monthly_minor
            counts["new" if first else "renewed"] += 1
    paying = history.paying_at(span.start)
    churned: dict[str, Decimal] = defaultdict(Decimal)
    churned_count = 0
    for user_id, access in paying.items():
        end = history.access_end(user_id, span.start)
        if end >= span.end or end + GRACE > now or history.paid_between(user_id, end, end + GRACE):
            continue
        churned_count += 1
        price = history.price_at(access, span.start)
        if price is not None:
            churned[price.currency] += price.monthly_minor
    day = min(day_of(span.end - timedelta(seconds=1)), day_of(now))
    return MonthFigures(
        month,
        counts["new"],
        _convert_minor(book, day, new),
        counts["renewed"],
        _convert_minor(book, day, renewed),
        len(paying),
        churned_count,
        _convert_minor(book, day, churned),
        complete=span.end + GRACE <= now,
    )


def ltv(arppu: Decimal | None, months: list[MonthFigures]) -> Decimal | None:
    """ARPPU ÷ the churn of the last LTV_MONTHS complete months; None while churn is unknown or zero."""
    recent = [m for m in months if m.complete][-LTV_MONTHS:]
    paying = sum(m.paying_at_start for m in recent)
    churned = sum(m.churned for m in recent)
    if arppu is None or not paying or not churned:
        return None
    return arppu / (Decimal(churned) / paying)


@dataclass(frozen=True, slots=True)
class TrialCohort:
    month: date
    started: int
    converted: int

    @property
    def rate(self) -> Decimal | None:
        return Decimal(self.converted) / self.started if self.started else None


async def trial_cohorts(session: AsyncSession, history: History, months: list[date]) -> list[TrialCohort]:
    first = day_start(months[0])
    rows = await session.execute(
        select(Subscription.user_id, func.min(Subscription.starts_at))
        .where(Subscription.is_trial, Subscription.status != SubscriptionStatus.PENDING)
        .group_by(Subscription.user_id)
    )
    started: dict[date, int] = defaultdict(int)
    converted: dict[date, int] = defaultdict(int)
    for user_id, trial_start in rows:
        if trial_start < first:
            continue
        month = month_start(day_of(trial_start))
        started[month] += 1
        paid = history.first_paid.get(user_id)
        if paid is not None and trial_start <= paid < trial_start + timedelta(days=TRIAL_DAYS):
            converted[month] += 1
    return [TrialCohort(month, started[month], converted[month]) for month in months]


@dataclass(frozen=True, slots=True)
class Cohort:
    month: date
    size: int
    retained: list[int]  # customers with paid access in month 0, 1, … after the first payment, up to now

    def share(self, k: int) -> Decimal:
        return Decimal(self.retained[k]) / self.size if self.size else Decimal(0)


def cohorts(history: History, months: list[date], today: date) -> list[Cohort]:
    members: dict[date, list[int]] = defaultdict(list)
    for user_id, first in history.first_paid.items():
        month = month_start(day_of(first))
        if month >= months[0]:
            members[month].append(user_id)
    result = []
    for month in months:
        retained = []
        k_month = month
        while k_month <= month_start(today):
            span = Span(day_start(k_month), day_start(add_months(k_month, 1)))
            retained.append(sum(1 for user_id in members[month] if history.had_access(user_id, span)))
            k_month = add_months(k_month, 1)
        result.append(Cohort(month, len(members[month]), retained))
    return result


# --- success rates and rates -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SuccessRate:
    provider: str
    method: str | None
    created: int
    succeeded: int

    @property
    def rate(self) -> Decimal | None:
        return Decimal(self.succeeded) / self.created if self.created else None


async def success_rates(session: AsyncSession, span: Span, *, renewals: bool = False) -> list[SuccessRate]:
    succeeded = func.count(case((Payment.status.in_(figures.PAID_STATUSES), 1)))
    statement = (
        select(Payment.provider, Payment.method, func.count(), succeeded)
        .where(Payment.created_at >= span.start, Payment.created_at < span.end)
        .group_by(Payment.provider, Payment.method)
        .order_by(Payment.provider, Payment.method)
    )
    if renewals:
        statement = statement.where(Payment.is_renewal)
    return [
        SuccessRate(provider, method, created, ok) for provider, method, created, ok in await session.execute(statement)
    ]


def total_rate(rates: list[SuccessRate]) -> SuccessRate:
    return SuccessRate("", None, sum(r.created for r in rates), sum(r.succeeded for r in rates))


@dataclass(frozen=True, slots=True)
class RateRow:
    currency: str
    valid_from: date | None
    rate: Decimal | None  # None: no rate at all (named on the page)


async def rate_table(session: AsyncSession, book: RateBook, currencies: set[str], today: date) -> list[RateRow]:
    rows = {
        currency: RateRow(currency, valid_from, rate)
        for currency, valid_from, rate in await session.execute(
            select(ExchangeRate.currency, ExchangeRate.valid_from, ExchangeRate.rate)
            .where(ExchangeRate.quote_currency == book.quote, ExchangeRate.valid_from <= today)
            .order_by(ExchangeRate.valid_from)
        )
    }
    for currency in currencies - set(rows) - {book.quote}:
        rows[currency] = RateRow(currency, None, None)
    return [rows[currency] for currency in sorted(rows)]


async def cohort_table(session: AsyncSession, now: datetime) -> list[Cohort]:
    """The retention triangle alone (the finance page's cohort block, loaded on its own)."""
    months = bucket_starts(day_of(now), "month", HISTORY_MONTHS)
    history = await load_history(session, day_start(add_months(months[0], -13)))
    return cohorts(history, months, day_of(now))


# --- the page ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class FinanceReport:
    now: datetime
    currency: str
    revenue: RevenueSeries
    by_plan: list[Breakdown]
    by_provider: list[Breakdown]
    by_method: list[Breakdown]
    by_currency: list[Breakdown]
    mrr: Mrr
    months: list[MonthFigures]
    ltv: Decimal | None
    trials: list[TrialCohort]
    cohorts: list[Cohort]
    success: list[SuccessRate]
    success_total: SuccessRate
    renewals: SuccessRate
    rates: list[RateRow]
    plan_names: dict[int, dict[str, str]]

    @property
    def missing_rates(self) -> set[str]:
        missing = set(self.revenue.total.converted.missing) | self.revenue.previous_total.converted.missing
        missing |= self.mrr.converted.missing
        return missing | {row.currency for row in self.rates if row.rate is None}


async def finance_report(
    session: AsyncSession, now: datetime, granularity: str, reporting_currency: str
) -> FinanceReport:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    today = day_of(now)
    starts = bucket_starts(today, granularity, 2 * GRANULARITIES[granularity])
    current_start = starts[GRANULARITIES[granularity]]
    lines = await revenue_lines(session, Span(day_start(starts[0]), now))
    book = await load_rates(session, reporting_currency)
    series = revenue_series(book, lines, today, granularity)
    current = [line for line in lines if line.day >= current_start]

    months = bucket_starts(today, "month", HISTORY_MONTHS)
    # Paid access bought up to a year before the first month shown can still be live in it.
    history = await load_history(session, day_start(add_months(months[0], -13)))
    mrr = mrr_at(book, history, now)
    month_rows = [month_figures(book, history, month, now) for month in months]
    span = Span(day_start(current_start), now)
    success = await success_rates(session, span)
    currencies = {line.item.currency for line in lines} | set(mrr.by_currency)
    plans = {pid: name for pid, name in await session.execute(select(Plan.id, Plan.name))}
    return FinanceReport(
        now=now,
        currency=reporting_currency,
        revenue=series,
        by_plan=breakdown(book, current, lambda line: str(line.plan_id or "")),
        by_provider=breakdown(book, current, lambda line: line.provider),
        by_method=breakdown(book, current, lambda line: f"{line.provider} · {line.method or '—'}"),
        by_currency=breakdown(book, current, lambda line: line.item.currency),
        mrr=mrr,
        months=month_rows,
        ltv=ltv(mrr.arppu, month_rows),
        trials=await trial_cohorts(session, history, months),
        cohorts=cohorts(history, months, today),
        success=success,
        success_total=total_rate(success),
        renewals=total_rate(await success_rates(session, span, renewals=True)),
        rates=await rate_table(session, book, currencies, today),
        plan_names=plans,
    )
