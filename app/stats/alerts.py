"""What needs a person now: payments whose money did not match the order, renewals that failed, an outbox that
stopped moving, panels that are down. Each is a count with a definition here, so the dashboard and any future
notifier agree on when something is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import OutboxMessage, OutboxStatus, Payment, PaymentStatus, Server, Subscription

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
