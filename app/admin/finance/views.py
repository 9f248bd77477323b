"""What the finance page shows: app/stats/finance.py's report as cards, chart data and table rows, money in the
viewer's language. Chart values are coordinates only; the exact figures are in the cards and tables."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from app.admin.charts import series_data
from app.admin.dashboard.views import Card, change
from app.kit.formatting import format_date, money_text
from app.kit.i18n import Translator
from app.kit.money import exponent
from app.stats.finance import Cohort, FinanceReport
from app.stats.rates import Converted

UTC_ZONE = ZoneInfo("UTC")


def percent(share: Decimal | None) -> str:
    """A share (0.5) as "50.0 %"; "—" when there is nothing to divide."""
    return "—" if share is None else f"{share * 100:.1f} %"


def money(amount: Decimal | Converted | None, currency: str, language: str) -> str:
    if amount is None:
        return "—"
    converted = amount if isinstance(amount, Converted) else Converted(currency, amount)
    text = money_text(converted.money, language)
    return text + (" *" if converted.missing else "")


def minor(minor_units: int | Decimal, currency: str, language: str) -> str:
    return money(Converted(currency, Decimal(minor_units).scaleb(-exponent(currency))), currency, language)


def plan_name(report: FinanceReport, key: str, language: str) -> str:
    if not key:
        return "—"
    names = report.plan_names.get(int(key)) or {}
    return str(names.get(language) or names.get("en") or key)


def bucket_label(start: date, granularity: str) -> str:
    if granularity == "month":
        return start.strftime("%Y-%m")
    return start.isoformat()


def cohort_context(cohorts: list[Cohort]) -> dict[str, Any]:
    return {"cohorts": cohorts, "cohort_width": max((len(c.retained) for c in cohorts), default=0), "percent": percent}


def finance_context(report: FinanceReport, _: Translator) -> dict[str, Any]:
    language, currency = _.language, report.currency
    revenue = report.revenue
    last_complete = next((m for m in reversed(report.months) if m.complete and m.churn is not None), None)
    cards = [
        Card(
            "revenue",
            _("admin_finance.revenue_period", granularity=_("admin_finance.granularity." + revenue.granularity)),
            money(revenue.total.converted, currency, language),
            change(revenue.total.converted.amount, revenue.previous_total.converted.amount),
            _("admin_finance.vs_previous"),
        ),
        Card("mrr", _("admin_finance.mrr"), money(report.mrr.converted, currency, language)),
        Card("paying", _("admin_finance.paying"), str(report.mrr.paying)),
        Card("arppu", _("admin_finance.arppu"), money(report.mrr.arppu, currency, language)),
        Card(
            "churn",
            _("admin_finance.churn"),
            percent(last_complete.churn) if last_complete else "—",
            hint=last_complete.month.strftime("%Y-%m") if last_complete else _("admin_finance.no_churn_yet"),
        ),
        Card("ltv", _("admin_finance.ltv"), money(report.ltv, currency, language), hint=_("admin_finance.ltv_hint")),
        Card(
            "success",
            _("admin_finance.success_rate"),
            percent(report.success_total.rate),
            hint=_("admin_finance.of", done=report.success_total.succeeded, total=report.success_total.created),
        ),
        Card(
            "renewals",
            _("admin_finance.renewal_rate"),
            percent(report.renewals.rate),
            hint=_("admin_finance.of", done=report.renewals.succeeded, total=report.renewals.created),
        ),
    ]
    chart = series_data(
        revenue.buckets,
        [
            (_("admin_finance.this_period"), [float(c.money.amount) for c in revenue.current]),
            (_("admin_finance.previous_period"), [float(c.money.amount) for c in revenue.previous]),
        ],
        zone=UTC_ZONE,
        unit=currency,
    )
    return {
        "report": report,
        "cards": cards,
        "chart": chart,
        "missing_rates": sorted(report.missing_rates),
        "history_as_of": _(
            "admin_finance.history_as_of", time=format_date(report.mrr.at, UTC_ZONE, language, with_time=True)
        ),
        **cohort_context(report.cohorts),
        "percent": percent,
        "money": lambda amount: money(amount, currency, language),
        "minor": lambda amount, cur: minor(amount, cur, language),
        "plan_name": lambda key: plan_name(report, key, language),
        "rate_text": lambda rate: format(rate.normalize(), "f"),
        "bucket_label": lambda start: bucket_label(start, revenue.granularity),
    }
