"""Business and backlog gauges computed from the database when Prometheus scrapes the web app.

Counted from the tables rather than counted in memory, so they are right after any restart and the same in every
web process; cached for a little while, so frequent scrapes (or several Prometheus servers) do not add load.
Every web process reports the same values: dashboards and alerts take `max` over them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.kit.clock import ensure_utc, utcnow
from app.kit.money import Money, MoneyError
from app.models import JobRun, OutboxMessage, Payment, Server, Subscription, TrialGrant
from app.models.ops import OutboxStatus
from app.models.payments import PaymentStatus
from app.models.subscriptions import LIVE_STATUSES

CACHE_SECONDS = 30.0
WINDOWS = {"24h": timedelta(hours=24), "30d": timedelta(days=30)}


class BusinessGauges:
    """Computes the families at most once per CACHE_SECONDS; concurrent scrapes share one computation."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, cache_seconds: float = CACHE_SECONDS):
        self._sessionmaker = sessionmaker
        self._cache_seconds = cache_seconds
        self._families: list[Metric] = []
        self._computed_at: float | None = None
        self._lock = asyncio.Lock()

    async def families(self) -> list[Metric]:
        async with self._lock:
            fresh = self._computed_at is not None and time.monotonic() - self._computed_at < self._cache_seconds
            if not fresh:
                async with self._sessionmaker() as session:
                    self._families = await compute(session)
                self._computed_at = time.monotonic()
            return self._families


async def compute(session: AsyncSession) -> list[Metric]:
    now = utcnow()
    return [
        *await _subscriptions(session, now),
        *await _payments(session, now),
        *await _trials(session, now),
        *await _outbox(session, now),
        await _panels(session),
        *await _jobs(session),
    ]


async def _subscriptions(session: AsyncSession, now: datetime) -> list[Metric]:
    live = GaugeMetricFamily("vpnshop_subscriptions_live", "Subscriptions giving VPN access now", labels=["kind"])
    rows = await session.execute(
        select(Subscription.is_trial, func.count())
        .where(Subscription.status.in_(LIVE_STATUSES), Subscription.ends_at > now)
        .group_by(Subscription.is_trial)
    )
    counts = {bool(is_trial): number for is_trial, number in rows}
    live.add_metric(["paid"], counts.get(False, 0))
    live.add_metric(["trial"], counts.get(True, 0))
    return [live]


async def _payments(session: AsyncSession, now: datetime) -> list[Metric]:
    by_status = GaugeMetricFamily(
        "vpnshop_payments_24h", "Payments created in the last 24 hours", labels=["provider", "status"]
    )
    rows = await session.execute(
        select(Payment.provider, Payment.status, func.count())
        .where(Payment.created_at > now - WINDOWS["24h"])
        .group_by(Payment.provider, Payment.status)
    )
    for provider, status, number in rows:
        by_status.add_metric([provider, str(status)], number)
    revenue = GaugeMetricFamily(
        "vpnshop_revenue", "Money received (succeeded payments by paid time)", labels=["currency", "window"]
    )
    for window, length in WINDOWS.items():
        rows = await session.execute(
            select(Payment.currency, func.sum(Payment.amount_minor))
            .where(Payment.status == PaymentStatus.SUCCEEDED, Payment.paid_at > now - length)
            .group_by(Payment.currency)
        )
        for currency, minor in rows:
            revenue.add_metric([currency, window], float(_major(int(minor or 0), currency)))
    return [by_status, revenue]


def _major(minor: int, currency: str) -> Decimal:
    try:
        return Money.from_minor(minor, currency).amount
    except MoneyError:  # a currency the money module does not know: report it as it is stored
        return Decimal(minor)


async def _trials(session: AsyncSession, now: datetime) -> list[Metric]:
    """Trials started, and how many of those customers have paid since (the trial's conversion)."""
    started = GaugeMetricFamily("vpnshop_trials_started", "Trials started in the window", labels=["window"])
    converted = GaugeMetricFamily(
        "vpnshop_trials_converted", "Customers whose trial started in the window and who have paid", labels=["window"]
    )
    paid = select(Payment.id).where(Payment.user_id == TrialGrant.user_id, Payment.status == PaymentStatus.SUCCEEDED)
    for window, length in WINDOWS.items():
        since = TrialGrant.created_at > now - length
        started.add_metric([window], await session.scalar(select(func.count()).where(since)) or 0)
        converted.add_metric([window], await session.scalar(select(func.count()).where(since, paid.exists())) or 0)
    return [started, converted]


async def _outbox(session: AsyncSession, now: datetime) -> list[Metric]:
    backlog = GaugeMetricFamily("vpnshop_outbox_backlog", "Outbox messages not yet done, by topic", labels=["topic"])
    rows = await session.execute(
        select(OutboxMessage.topic, func.count())
        .where(OutboxMessage.status == OutboxStatus.PENDING)
        .group_by(OutboxMessage.topic)
    )
    for topic, number in rows:
        backlog.add_metric([topic], number)
    # Due messages only: one deliberately scheduled for later is not stuck.
    oldest = await session.scalar(
        select(func.min(OutboxMessage.available_at)).where(
            OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.available_at <= now
        )
    )
    age = GaugeMetricFamily("vpnshop_outbox_oldest_due_seconds", "How long the oldest due outbox message has waited")
    age.add_metric([], max(0.0, (now - ensure_utc(oldest)).total_seconds()) if oldest else 0.0)
    dead = GaugeMetricFamily("vpnshop_outbox_dead", "Outbox messages given up on (need staff)")
    given_up = await session.scalar(select(func.count()).where(OutboxMessage.status == OutboxStatus.DEAD))
    dead.add_metric([], given_up or 0)
    return [backlog, age, dead]


async def _panels(session: AsyncSession) -> Metric:
    up = GaugeMetricFamily("vpnshop_panel_up", "1 when the panel answered its last health check", labels=["server"])
    rows = await session.execute(select(Server.name, Server.health).where(Server.is_enabled.is_(True)))
    for name, health in rows:
        if health != "unknown":
            up.add_metric([name], 1 if health == "ok" else 0)
    return up


async def _jobs(session: AsyncSession) -> list[Metric]:
    """Each job's latest finished run: whether it failed, and when a run last succeeded (the backup alert)."""
    failed = GaugeMetricFamily("vpnshop_job_last_run_failed", "1 when the job's latest run failed", labels=["job"])
    latest = (
        select(JobRun.job_name, func.max(JobRun.id).label("id"))
        .where(JobRun.outcome != "running")
        .group_by(JobRun.job_name)
        .subquery()
    )
    rows = await session.execute(select(JobRun.job_name, JobRun.outcome).join(latest, and_(JobRun.id == latest.c.id)))
    for job, outcome in rows:
        failed.add_metric([job], 1 if outcome == "failed" else 0)
    succeeded = GaugeMetricFamily(
        "vpnshop_job_last_success_timestamp_seconds", "When the job last finished well (Unix time)", labels=["job"]
    )
    rows = await session.execute(
        select(JobRun.job_name, func.max(JobRun.finished_at)).where(JobRun.outcome == "ok").group_by(JobRun.job_name)
    )
    for job, finished in rows:
        succeeded.add_metric([job], ensure_utc(finished).timestamp())
    return [failed, succeeded]
