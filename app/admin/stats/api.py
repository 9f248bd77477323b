"""GET /api/admin/stats/overview|revenue|users|usage: the same figures as the dashboard and the finance page
(app/stats), as JSON. Money is exact: minor units per currency, and the reporting-currency total as a decimal
string with the currencies it leaves out for want of a rate."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from app.admin.auth.dependencies import require
from app.deps import AppSettings, DbSession
from app.kit.clock import utcnow
from app.stats import figures, overview
from app.stats.finance import finance_report
from app.stats.periods import day_of
from app.stats.rates import Converted

router = APIRouter(prefix="/stats")


class Amount(BaseModel):
    """A total in the reporting currency; `missing` names the currencies left out (no rate for their day)."""

    currency: str
    amount: str
    missing: list[str]

    @classmethod
    def of(cls, converted: Converted) -> Amount:
        return cls(currency=converted.currency, amount=str(converted.money.amount), missing=sorted(converted.missing))


class Overview(BaseModel):
    day: date
    new_customers: int
    app_dau: int
    vpn_dau: int
    live_trial: int
    live_paid: int
    online_now: int


@router.get("/overview", response_model=Overview, dependencies=[require("dashboard:read")])
async def stats_overview(db: DbSession, settings: AppSettings) -> Overview:
    """Today's live figures (UTC day), as the dashboard's cards show them."""
    today = await overview.today(db, utcnow(), settings.reporting_currency)
    return Overview(
        day=today.day,
        new_customers=today.new_customers,
        app_dau=today.app_dau,
        vpn_dau=today.vpn_dau,
        live_trial=today.live.trial,
        live_paid=today.live.paid,
        online_now=today.online_now,
    )


class CurrencyTotal(BaseModel):
    currency: str
    payments: int
    gross_minor: int
    refunds: int
    refunded_minor: int
    net_minor: int

    @classmethod
    def of(cls, item: figures.CurrencyRevenue) -> CurrencyTotal:
        return cls(
            currency=item.currency,
            payments=item.payments,
            gross_minor=item.gross_minor,
            refunds=item.refunds,
            refunded_minor=item.refunded_minor,
            net_minor=item.net_minor,
        )


class Bucket(BaseModel):
    start: date
    revenue: Amount
    previous_period: Amount


class RevenueOut(BaseModel):
    granularity: str
    buckets: list[Bucket]
    total: Amount
    previous_total: Amount
    by_currency: list[CurrencyTotal]
    mrr: Amount
    paying_customers: int
    arppu: str | None
    ltv: str | None


@router.get("/revenue", response_model=RevenueOut, dependencies=[require("finance:read")])
async def stats_revenue(
    db: DbSession, settings: AppSettings, by: Annotated[Literal["day", "week", "month"], Query()] = "month"
) -> RevenueOut:
    """Revenue per bucket against the same bucket of the period before, per currency, and MRR, ARPPU and LTV."""
    report = await finance_report(db, utcnow(), by, settings.reporting_currency)
    revenue = report.revenue
    return RevenueOut(
        granularity=by,
        buckets=[
            Bucket(start=start, revenue=Amount.of(current), previous_period=Amount.of(previous))
            for start, current, previous in zip(revenue.buckets, revenue.current, revenue.previous, strict=True)
        ],
        total=Amount.of(revenue.total.converted),
        previous_total=Amount.of(revenue.previous_total.converted),
        by_currency=[CurrencyTotal.of(item) for item in revenue.total.by_currency.values()],
        mrr=Amount.of(report.mrr.converted),
        paying_customers=report.mrr.paying,
        arppu=_decimal(report.mrr.arppu, report.currency),
        ltv=_decimal(report.ltv, report.currency),
    )


def _decimal(value: Decimal | None, currency: str) -> str | None:
    """A derived amount rounded to the currency's places, as a string (never a float)."""
    return None if value is None else str(Converted(currency, value).money.amount)


class Series(BaseModel):
    """Daily values from the rollup, oldest first; null for a day it has not reached yet."""

    days: list[date]
    values: dict[str, list[int | None]]


Days = Annotated[Literal["30", "90", "365"], Query()]


@router.get("/users", response_model=Series, dependencies=[require("dashboard:read")])
async def stats_users(db: DbSession, settings: AppSettings, days: Days = "30") -> Series:
    """New customers and live subscriptions (trial, paid) per day."""
    growth = await overview.growth(db, day_of(utcnow()), int(days), settings.reporting_currency)
    return Series(
        days=growth.days,
        values={"new_customers": growth.new_users, "live_trial": growth.live_trial, "live_paid": growth.live_paid},
    )


@router.get("/usage", response_model=Series, dependencies=[require("dashboard:read")])
async def stats_usage(db: DbSession, settings: AppSettings, days: Days = "30") -> Series:
    """Active customers per day, in ADMIN.md's two labelled versions: opened the app, and used the VPN."""
    growth = await overview.growth(db, day_of(utcnow()), int(days), settings.reporting_currency)
    return Series(days=growth.days, values={"app_dau": growth.app_dau, "vpn_dau": growth.vpn_dau})
