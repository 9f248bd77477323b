"""What needs a person now: payments whose money did not match the order, renewals that failed, an outbox that
stopped moving, panels that are down. Each is a count with a definition here, so the dashboard and any future
notifier agree on when something is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import JobRun, OutboxMessage, OutboxStatus, Payment, PaymentStatus, Server, Subscription
from app.notifications.service import alert_staff

# Mismatches stay until someone refunds or settles them; older ones are in the payments list, filtered.
MISMATCH_WINDOW = timedelta(days=30)
# A failed renewal matters while the subscription is retrying or just ended.
FAILED_RENEWAL_WINDOW = timedelta(days=7)
# The dispatcher runs every few seconds; a message due this long ago means it is not being dispatched.
OUTBOX_STUCK_AFTER = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Alerts:
    mismatches: int
    failed_renewals: int
    outbox_overdue: int
    outbox_dead: int
    servers_down: tuple[str, ...]

    @property
    def raised(self) -> bool:
        return bool(
            self.mismatches or self.failed_renewals or self.outbox_overdue or self.outbox_dead or self.servers_down
        )


async def current_alerts(session: AsyncSession, now: datetime) -> Alerts:
    mismatches = await session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(Payment.status == PaymentStatus.MISMATCH, Payment.created_at >= now - MISMATCH_WINDOW)
    )
    failed_renewals = await session.scalar(
        select(func.count())
        .select_from(Subscription)
        # A literal zero, so PostgreSQL matches the partial index ix_subscriptions_failed_renewal's condition.
        .where(Subscription.renewal_failures > literal_column("0"), Subscription.ends_at >= now - FAILED_RENEWAL_WINDOW)
    )
    overdue = await session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.available_at < now - OUTBOX_STUCK_AFTER)
    )
    dead = await session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == OutboxStatus.DEAD)
    )
    down = await session.scalars(
        select(Server.name).where(Server.is_enabled, Server.health == "down").order_by(Server.name)
    )
    return Alerts(
        mismatches=mismatches or 0,
        failed_renewals=failed_renewals or 0,
        outbox_overdue=overdue or 0,
        outbox_dead=dead or 0,
        servers_down=tuple(down),
    )


# Subscriptions whose renewal charge failed within FAILED_RENEWAL_WINDOW at which staff are told: one or two are
# customers' cards; this many at once is a provider or configuration problem.
FAILED_RENEWALS_SPIKE = 10
BACKUP_JOBS = ("backup_database", "backup_now")


async def raise_alerts(session: AsyncSession, now: datetime) -> list[str]:
    """Queue a staff alert (Telegram: owners, admins and the staff chat of /admin/settings) for each condition
    that needs a person; returns the kinds raised. Each condition's dedupe key holds a time bucket, so a
    lasting problem is repeated at most hourly (daily for renewals) instead of every run. A payment mismatch is
    alerted where it is found (app/payments/service.py). An outbox alert travels through the outbox itself:
    it reaches staff once the dispatcher moves again, and the dashboard shows the backlog meanwhile."""
    alerts = await current_alerts(session, now)
    hour, day = now.strftime("%Y-%m-%dT%H"), now.date().isoformat()
    raised: list[str] = []
    for name in alerts.servers_down:
        await alert_staff(session, "server_down", {"server": name}, dedupe_key=f"server_down:{name}:{hour}")
        raised.append("server_down")
    if alerts.failed_renewals >= FAILED_RENEWALS_SPIKE:
        data = {"count": alerts.failed_renewals}
        await alert_staff(session, "renewals_failing", data, dedupe_key=f"renewals_failing:{day}")
        raised.append("renewals_failing")
    if alerts.outbox_overdue or alerts.outbox_dead:
        data = {"overdue": alerts.outbox_overdue, "dead": alerts.outbox_dead}
        await alert_staff(session, "outbox_stuck", data, dedupe_key=f"outbox_stuck:{hour}")
        raised.append("outbox_stuck")
    failed_backup = await session.scalar(
        select(JobRun)
        .where(JobRun.job_name.in_(BACKUP_JOBS), JobRun.started_at >= now - timedelta(days=1))
        .order_by(JobRun.id.desc())
        .limit(1)
    )
    if failed_backup is not None and failed_backup.outcome == "failed":
        data = {"job": failed_backup.job_name, "error": (failed_backup.error or "")[:500]}
        await alert_staff(session, "backup_failed", data, dedupe_key=f"backup_failed:{failed_backup.id}")
        raised.append("backup_failed")
    return raised
