"""The dashboard's view model: app/stats figures turned into cards, chart data and alert lines, each shown only
to staff whose permissions cover it (revenue needs finance:read, payments payments:read)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer
from app.admin.charts import series_data
from app.admin.dashboard.queries import latest_payments, server_statuses
from app.admin.payments.views import HELPERS
from app.kit.formatting import format_clock, money_text
from app.kit.i18n import Translator
from app.stats import overview
from app.stats.alerts import current_alerts
from app.stats.periods import day_of
from app.stats.rates import Converted

UTC_ZONE = ZoneInfo("UTC")


def change(current: Any, previous: Any) -> float | None:
    """Percent change against the previous period; None when there is nothing to compare with."""
    if not previous:
        return None
    return round(float(100 * (current - previous) / previous), 1)


@dataclass(frozen=True, slots=True)
class Card:
    key: str
    label: str
    value: str
    delta: float | None = None
    delta_label: str | None = None
    hint: str | None = None
    href: str | None = None


def _money_hint(revenue: overview.Revenue, _: Translator, language: str) -> str:
    parts = [money_text(item.net, language) for item in revenue.by_currency.values()]
    hint = " · ".join(parts) if parts else _("admin_dashboard.no_payments")
    if revenue.converted.missing:
        hint += " · " + _("admin_dashboard.no_rate", currencies=", ".join(sorted(revenue.converted.missing)))
    return hint


def _converted(value: Converted, language: str) -> str:
    return money_text(value.money, language)


async def live_context(
    session: AsyncSession, viewer: StaffViewer, now: datetime, reporting_currency: str, _: Translator, zone: Any
) -> dict[str, Any]:
    """Everything the self-refreshing part of the dashboard shows."""
    language = _.language
    today = await overview.today(session, now, reporting_currency)
    y, rolled = today.yesterday, today.rolled_today
    vs_yesterday = _("admin_dashboard.vs_yesterday")
    as_of = (
        _("admin_dashboard.as_of", time=format_clock(rolled.computed_at, zone, language))
        if rolled
        else _("admin_dashboard.rollup_pending")
    )
    cards = [
        Card(
            "app_dau",
            _("admin_dashboard.app_dau"),
            str(today.app_dau),
            change(today.app_dau, y and y.app_dau),
            vs_yesterday,
            _("admin_dashboard.app_dau_hint"),
        ),
        Card(
            "vpn_dau",
            _("admin_dashboard.vpn_dau"),
            str(today.vpn_dau),
            change(today.vpn_dau, y and y.vpn_dau),
            vs_yesterday,
            _("admin_dashboard.vpn_dau_hint"),
        ),
        Card("app_mau", _("admin_dashboard.app_mau"), str(rolled.app_mau) if rolled else "—", hint=as_of),
        Card("vpn_mau", _("admin_dashboard.vpn_mau"), str(rolled.vpn_mau) if rolled else "—", hint=as_of),
        Card(
            "new_customers",
            _("admin_dashboard.new_customers"),
            str(today.new_customers),
            change(today.new_customers, y and y.new_users),
            vs_yesterday,
        ),
        Card(
            "live_subscriptions",
            _("admin_dashboard.live_subscriptions"),
            str(today.live.total),
            hint=_("admin_dashboard.live_split", paid=today.live.paid, trial=today.live.trial),
        ),
        Card(
            "online_now", _("admin_dashboard.online_now"), str(today.online_now), hint=_("admin_dashboard.online_hint")
        ),
    ]
    if viewer.can("finance:read"):
        cards += [
            Card(
                "revenue_today",
                _("admin_dashboard.revenue_today"),
                _converted(today.revenue_today.converted, language),
                change(today.revenue_today.converted.amount, today.revenue_yesterday.amount),
                vs_yesterday,
                _money_hint(today.revenue_today, _, language),
            ),
            Card(
                "revenue_month",
                _("admin_dashboard.revenue_month"),
                _converted(today.revenue_month.converted, language),
                hint=_money_hint(today.revenue_month, _, language),
            ),
        ]
    alerts = await current_alerts(session, now)
    return {
        "cards": cards,
        "alerts": alerts,
        "servers": await server_statuses(session),
        "payments": await latest_payments(session) if viewer.can("payments:read") else None,
        "updated_at": now,
        **HELPERS,
    }


async def growth_context(
    session: AsyncSession, viewer: StaffViewer, now: datetime, days: int, reporting_currency: str, _: Translator
) -> dict[str, Any]:
    growth = await overview.growth(session, day_of(now), days, reporting_currency)

    def chart(*series: tuple[str, list[Any]], unit: str = "") -> dict[str, Any]:
        return series_data(growth.days, series, zone=UTC_ZONE, unit=unit)

    charts = [
        (
            "customers",
            _("admin_dashboard.chart.customers"),
            chart((_("admin_dashboard.new_customers"), growth.new_users)),
        ),
        (
            "active",
            _("admin_dashboard.chart.active"),
            chart((_("admin_dashboard.app_dau"), growth.app_dau), (_("admin_dashboard.vpn_dau"), growth.vpn_dau)),
        ),
        (
            "subscriptions",
            _("admin_dashboard.chart.subscriptions"),
            chart((_("admin_dashboard.paid"), growth.live_paid), (_("admin_dashboard.trial"), growth.live_trial)),
        ),
    ]
    if viewer.can("finance:read"):
        # Chart coordinates only: the figures themselves are exact in the cards and the finance pages.
        revenue = [float(value) if value is not None else None for value in growth.revenue]
        charts.append(
            (
                "revenue",
                _("admin_dashboard.chart.revenue", currency=growth.currency),
                chart((growth.currency, revenue), unit=growth.currency),
            )
        )
    return {
        "days": days,
        "periods": overview.GROWTH_PERIODS,
        "charts": charts,
        "missing_rates": sorted(growth.missing_rates) if viewer.can("finance:read") else [],
    }
