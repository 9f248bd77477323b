"""The business figures' own tables: the daily activity record, the daily rollup the worker maintains, and the
dated exchange rates staff keep for reporting revenue in one currency (ADMIN.md "Numbers that must be right")."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, CreatedMixin, IdMixin
from app.models.panels import UsageDaily, VpnAccount
from app.models.payments import Payment
from app.models.subscriptions import Subscription
from app.models.users import User


class DecimalText(TypeDecorator[Decimal]):
    """An exact decimal on both databases: SQLite's NUMERIC is a float underneath, so the digits are kept as text.
    Only for values that are read, never summed in SQL (an exchange rate)."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("DecimalText takes a Decimal")
        return format(value.normalize(), "f")

    def process_result_value(self, value: str | None, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - only our own bind writes this column
            raise ValueError(f"not a decimal: {value!r}") from exc


class UserActivityDay(Base):
    """One row per customer per UTC day on which they opened the app (Mini App, browser cabinet or bot). Written
    once a day per customer, when last_seen_at moves to a new day; users.last_seen_at alone has no history."""

    __tablename__ = "user_activity_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)

    __table_args__ = (Index("ix_user_activity_days_user_id", "user_id"),)


class DailyStats(Base):
    """The rollup of one finished UTC day (app/stats/rollup.py); the dashboard's history comes from here."""

    __tablename__ = "daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    new_users: Mapped[int] = mapped_column(Integer)
    app_dau: Mapped[int] = mapped_column(Integer)
    vpn_dau: Mapped[int] = mapped_column(Integer)
    # Distinct customers over the 30 days ending with this one.
    app_mau: Mapped[int] = mapped_column(Integer)
    vpn_mau: Mapped[int] = mapped_column(Integer)
    # Subscriptions giving access at the day's end.
    live_trial: Mapped[int] = mapped_column(Integer)
    live_paid: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime]


class DailyRevenue(Base):
    """Revenue of one UTC day per plan, provider, method and currency: payments that succeeded that day, refunds
    made that day (each under its payment's plan, provider and method). The dashboard sums a day's rows per
    currency; the finance page reads them for every finished day."""

    __tablename__ = "daily_revenue"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Key columns cannot be NULL: 0 stands for "no plan" and "" for "no method" (app/stats/finance.py maps back).
    plan_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    method: Mapped[str] = mapped_column(String(32), primary_key=True)
    payments: Mapped[int] = mapped_column(Integer)
    gross_minor: Mapped[int] = mapped_column(BigInteger)
    refunds: Mapped[int] = mapped_column(Integer)
    refunded_minor: Mapped[int] = mapped_column(BigInteger)


class ExchangeRate(IdMixin, CreatedMixin, Base):
    """How many units of `quote_currency` (the reporting currency) one unit of `currency` is worth, from
    `valid_from` until the next row for the pair. Staff maintain it; a day without a rate is reported as such."""

    __tablename__ = "exchange_rates"

    currency: Mapped[str] = mapped_column(String(8))
    quote_currency: Mapped[str] = mapped_column(String(8))
    valid_from: Mapped[date] = mapped_column(Date)
    rate: Mapped[Decimal] = mapped_column(DecimalText())

    __table_args__ = (UniqueConstraint("currency", "quote_currency", "valid_from"),)


# Indexes the dashboard and the payments list need on other areas' tables, declared here (and created by migration
# 0010) so that this work stays in its own files: last seen (the customers table filters and sorts by it),
# "online now", VPN users per day, failed renewals, money per day, and the payments list's sorts and search.
Index("ix_users_last_seen_at", User.last_seen_at)
Index("ix_vpn_accounts_online_at", VpnAccount.online_at)
# Partial: only rows with traffic count as VPN use, so DAU and MAU by VPN read this index alone.
USED_TRAFFIC = text("upload_bytes + download_bytes > 0")
Index(
    "ix_usage_daily_day_user_id",
    UsageDaily.day,
    UsageDaily.user_id,
    postgresql_where=USED_TRAFFIC,
    sqlite_where=USED_TRAFFIC,
)
# The few subscriptions whose renewal failed (an alert), found without reading them all.
FAILED_RENEWAL = text("renewal_failures > 0")
Index(
    "ix_subscriptions_failed_renewal",
    Subscription.ends_at,
    postgresql_where=FAILED_RENEWAL,
    sqlite_where=FAILED_RENEWAL,
)
Index("ix_payments_paid_at", Payment.paid_at)
Index("ix_payments_refunded_at", Payment.refunded_at)
Index("ix_payments_created_at_id", Payment.created_at, Payment.id)
Index("ix_payments_amount_minor_id", Payment.amount_minor, Payment.id)


class DailyCheckouts(Base):
    """Payments created on one UTC day per provider, method and kind (an automatic renewal charge or not), and how
    many of them have succeeded: the finance page's success rates. Rewritten for the last days on every run, as a
    checkout's outcome can still change for a while (app/stats/finance.py SETTLE_DAYS)."""

    __tablename__ = "daily_checkouts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    method: Mapped[str] = mapped_column(String(32), primary_key=True)  # "" for none, as in DailyRevenue
    is_renewal: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    created: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer)


class FinanceMonth(Base):
    """One calendar month's MRR movements, churn, trial conversion and cohort retention (app/stats/finance.py),
    as of `computed_at`. They come from every paid payment and subscription of two years, too much to read on a
    page load, so the worker recomputes the months shown every quarter hour. Money in minor units per currency
    (`{"RUB": "99900"}`, fractional: a year's plan counts a twelfth a month), converted when the page is shown."""

    __tablename__ = "finance_months"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    new: Mapped[int] = mapped_column(Integer)
    new_mrr: Mapped[dict[str, Any]]
    renewed: Mapped[int] = mapped_column(Integer)
    renewed_mrr: Mapped[dict[str, Any]]
    paying_at_start: Mapped[int] = mapped_column(Integer)
    churned: Mapped[int] = mapped_column(Integer)
    churned_mrr: Mapped[dict[str, Any]]
    trials_started: Mapped[int] = mapped_column(Integer)
    trials_converted: Mapped[int] = mapped_column(Integer)
    # Customers whose first payment fell in this month, and how many of them had paid access in each month since.
    cohort_size: Mapped[int] = mapped_column(Integer)
    cohort_retained: Mapped[list[Any]]
    computed_at: Mapped[datetime]


class MrrDay(Base):
    """MRR and the paying customers at `computed_at`, the last time the worker computed it on that UTC day."""

    __tablename__ = "mrr_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    by_currency: Mapped[dict[str, Any]]  # minor units per currency, as in FinanceMonth
    paying: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime]
