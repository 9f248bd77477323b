"""The finance page's figures (ADMIN.md "Numbers that must be right"), each defined once, here or in figures.py.

- Revenue: figures.py's rule (succeeded provider payments by paid_at, minus refunds by refunded_at, the refunded
  amount being `figures.refunded_minor()`), grouped by UTC day, plan, provider, method and currency; converted
  into the reporting currency at each day's rate (rates.py: a missing rate is named, never guessed).
- MRR, its movements, churn, trial → paid and cohort retention: paid_history.py, where they are computed from
  the paid history; here they are converted at the rate of the day they describe (MRR: the day it was computed;
  a month: its last day, or the snapshot's day for the current one). ARPPU: MRR ÷ customers paying then.
  LTV: ARPPU ÷ the churn of the last LTV_MONTHS complete months (churned ÷ paying at their starts, summed).
- Payment success rate: payments that succeeded ÷ payments created (checkouts), by created_at, per provider and
  method; the renewal success rate is the same over automatic renewal charges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.money import exponent
from app.models import (
    DailyCheckouts,
    DailyRevenue,
    DailyStats,
    ExchangeRate,
    Payment,
    PaymentRefund,
    Plan,
    RefundStatus,
)
from app.stats import figures, paid_history
from app.stats.paid_history import GRACE, Amounts, MonthTotals, Snapshot
from app.stats.periods import Span, add_months, day_of, day_start, month_start
from app.stats.rates import Converted, RateBook, convert, load_rates

# How many buckets the revenue chart shows per granularity (and as many before them, the previous period).
GRANULARITIES: dict[str, int] = {"day": 30, "week": 12, "month": 12}
# Complete months whose churn gives LTV.
LTV_MONTHS = 3
# A checkout's outcome can still change this long after it was created (a late webhook, a reconciliation): the
# success rates count these last days from the payments, and the rollup rewrites them on every run.
SETTLE_DAYS = 7


def utc_day(session: AsyncSession, column):  # type: ignore[no-untyped-def]  (a SQL expression)
    """The UTC calendar day of a timestamp column (periods.py's day), in the session's dialect. The time zone is
    a literal, not a parameter, so PostgreSQL sees the same expression in SELECT and GROUP BY."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone(literal_column("'UTC'"), column))
    return func.date(column)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


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


async def revenue_lines(session: AsyncSession, span: Span, rolled: set[date]) -> list[Line]:
    """Revenue over the span, per day, plan, provider, method and currency: the `rolled` days (rolled_days) come
    from daily_revenue, the others (today, a day the worker has not reached) are counted."""
    # Plain rows, not ORM objects: a year of days by plan, provider and method is thousands of them.
    stored = await session.execute(
        select(
            DailyRevenue.day,
            DailyRevenue.plan_id,
            DailyRevenue.provider,
            DailyRevenue.method,
            DailyRevenue.currency,
            DailyRevenue.payments,
            DailyRevenue.gross_minor,
            DailyRevenue.refunds,
            DailyRevenue.refunded_minor,
        ).where(DailyRevenue.day >= day_of(span.start), DailyRevenue.day <= day_of(span.end))
    )
    lines = [
        Line(day, plan_id or None, provider, method or None, figures.CurrencyRevenue(currency, *amounts))
        for day, plan_id, provider, method, currency, *amounts in stored
        if day in rolled
    ]
    for gap in _gaps(span, rolled):
        lines += await payment_lines(session, gap)
    return lines


async def rolled_days(session: AsyncSession, span: Span) -> set[date]:
    """The whole days of the span that the rollup stored after they had ended."""
    return {
        day
        for day, computed_at in await session.execute(
            select(DailyStats.day, DailyStats.computed_at).where(
                DailyStats.day >= day_of(span.start), DailyStats.day <= day_of(span.end)
            )
        )
        if Span.of_day(day).start >= span.start and Span.of_day(day).end <= min(span.end, computed_at)
    }


def _gaps(span: Span, rolled: set[date]) -> list[Span]:
    """The runs of days of the span that are not rolled up, each as one span (clipped to the span)."""
    gaps = []
    day, last = day_of(span.start), day_of(span.end - timedelta(microseconds=1))
    while day <= last:
        if day in rolled:
            day += timedelta(days=1)
            continue
        first = day
        while day <= last and day not in rolled:
            day += timedelta(days=1)
        gaps.append(Span(max(span.start, day_start(first)), min(span.end, day_start(day))))
    return gaps


async def payment_lines(session: AsyncSession, span: Span) -> list[Line]:
    """Revenue over the span counted from the payments (figures.revenue's rule), per day, plan, provider, method
    and currency."""
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


# --- paid history, converted ------------------------------------------------------------------------------------


def _convert_minor(book: RateBook, day: date, amounts: Amounts) -> Converted:
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
    by_currency: Amounts
    converted: Converted
    paying: int

    @property
    def arppu(self) -> Decimal | None:
        return self.converted.amount / self.paying if self.paying else None


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
    complete: bool  # the month (and the churn grace after it) was over when the figures were computed

    @property
    def churn(self) -> Decimal | None:
        return Decimal(self.churned) / self.paying_at_start if self.paying_at_start else None


def month_figures(book: RateBook, totals: MonthTotals, at: datetime) -> MonthFigures:
    end = day_start(add_months(totals.month, 1))
    day = min(day_of(end - timedelta(seconds=1)), day_of(at))
    return MonthFigures(
        totals.month,
        totals.new,
        _convert_minor(book, day, totals.new_mrr),
        totals.renewed,
        _convert_minor(book, day, totals.renewed_mrr),
        totals.paying_at_start,
        totals.churned,
        _convert_minor(book, day, totals.churned_mrr),
        complete=end + GRACE <= at,
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


@dataclass(frozen=True, slots=True)
class Cohort:
    month: date
    size: int
    retained: list[int]  # customers with paid access in month 0, 1, … after the first payment, up to now

    def share(self, k: int) -> Decimal:
        return Decimal(self.retained[k]) / self.size if self.size else Decimal(0)


def cohorts(history: Snapshot) -> list[Cohort]:
    return [Cohort(totals.month, totals.cohort_size, totals.cohort_retained) for totals in history.months]


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


@dataclass(frozen=True, slots=True)
class Checkouts:
    """Payments created on one UTC day with one provider, method and kind, and how many of them succeeded."""

    day: date
    provider: str
    method: str | None
    is_renewal: bool
    created: int
    succeeded: int


async def counted_checkouts(session: AsyncSession, span: Span) -> list[Checkouts]:
    """The span's checkouts counted from the payments, by the day they were created."""
    created_day = utc_day(session, Payment.created_at)
    succeeded = func.count(case((Payment.status.in_(figures.PAID_STATUSES), 1)))
    keys = (Payment.provider, Payment.method, Payment.is_renewal)
    rows = await session.execute(
        select(created_day, *keys, func.count(), succeeded)
        .where(Payment.created_at >= span.start, Payment.created_at < span.end)
        .group_by(created_day, *keys)
    )
    return [Checkouts(_as_date(day), *values) for day, *values in rows]


async def checkouts(session: AsyncSession, span: Span, rolled: set[date]) -> list[Checkouts]:
    """The span's checkouts: settled `rolled` days (older than SETTLE_DAYS) from daily_checkouts, the others
    counted."""
    settled_before = day_of(span.end) - timedelta(days=SETTLE_DAYS)
    settled = {day for day in rolled if day < settled_before and Span.of_day(day).start >= span.start}
    stored = await session.execute(
        select(
            DailyCheckouts.day,
            DailyCheckouts.provider,
            DailyCheckouts.method,
            DailyCheckouts.is_renewal,
            DailyCheckouts.created,
            DailyCheckouts.succeeded,
        ).where(DailyCheckouts.day >= day_of(span.start), DailyCheckouts.day < settled_before)
    )
    rows = [
        Checkouts(day, provider, method or None, *counts) for day, provider, method, *counts in stored if day in settled
    ]
    for gap in _gaps(span, settled):
        rows += await counted_checkouts(session, gap)
    return rows


def success_rates(rows: Iterable[Checkouts], *, renewals: bool = False) -> list[SuccessRate]:
    """Created and succeeded per provider and method (over automatic renewal charges only, with `renewals`)."""
    totals: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        if renewals and not row.is_renewal:
            continue
        total = totals[row.provider, row.method]
        total[0] += row.created
        total[1] += row.succeeded
    ordered = sorted(totals.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    return [SuccessRate(provider, method, created, ok) for (provider, method), (created, ok) in ordered]


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
    return cohorts(await paid_history.snapshot(session, now))


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
    mrr: Mrr  # its `at`: when MRR, the months, trials and cohorts were computed (paid_history.py)
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
    # Both periods' days: read once, for the revenue lines and the checkouts (the current period's days).
    rolled = await rolled_days(session, Span(day_start(starts[0]), now))
    lines = await revenue_lines(session, Span(day_start(starts[0]), now), rolled)
    book = await load_rates(session, reporting_currency)
    series = revenue_series(book, lines, today, granularity)
    current = [line for line in lines if line.day >= current_start]

    history = await paid_history.snapshot(session, now)
    mrr = Mrr(history.at, history.mrr, _convert_minor(book, day_of(history.at), history.mrr), history.paying)
    month_rows = [month_figures(book, totals, history.at) for totals in history.months]
    created = await checkouts(session, Span(day_start(current_start), now), rolled)
    success = success_rates(created)
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
        trials=[TrialCohort(t.month, t.trials_started, t.trials_converted) for t in history.months],
        cohorts=cohorts(history),
        success=success,
        success_total=total_rate(success),
        renewals=total_rate(success_rates(created, renewals=True)),
        rates=await rate_table(session, book, currencies, today),
        plan_names=plans,
    )
