"""One sender per broadcast: a lease on the broadcast row (owner id + expiry) taken by a conditional UPDATE,
renewed while sending, handed to a continuation job at the end of a slice, and taken over by another worker once
it lapses (its owner died).

Taking over is where "never sent twice" is decided: deliveries the dead owner left in `sending` may or may not
have reached Telegram, which has no idempotency key, so they become `unknown` and are never sent again.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import segments
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus

INTERRUPTED = "interrupted while sending (worker stopped); not sent again"


def new_owner() -> str:
    """A lease owner id that says where it runs (for whoever reads the row) and is unique."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Taken:
    broadcast: Broadcast
    interrupted: int  # deliveries a previous owner left in `sending`, now `unknown`
    materialized: bool  # this take wrote the deliveries (the broadcast's first start)


async def take(session: AsyncSession, broadcast_id: int, owner: str, *, ttl: timedelta, now: datetime) -> Taken | None:
    """Take the lease of a running broadcast when it is free, has lapsed, or was handed to `owner` by the
    previous slice; None when someone else holds it (or the broadcast is not running)."""
    lease_free = or_(
        Broadcast.lease_owner.is_(None),
        Broadcast.lease_until.is_(None),
        Broadcast.lease_until < now,
        Broadcast.lease_owner == owner,
    )
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status == BroadcastStatus.RUNNING, lease_free)
        .values(lease_owner=owner, lease_until=now + ttl)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    interrupted = await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.status == DeliveryStatus.SENDING)
        .values(status=DeliveryStatus.UNKNOWN, error=INTERRUPTED)
    )
    unknown = int(interrupted.rowcount or 0)  # type: ignore[attr-defined]
    broadcast = await session.scalar(
        select(Broadcast).where(Broadcast.id == broadcast_id).execution_options(populate_existing=True)
    )
    assert broadcast is not None
    broadcast.unknown += unknown
    materialized = broadcast.started_at is None
    if materialized:
        # The audience is frozen here, once: later changes to the segment's users do not add recipients.
        segment = segments.Segment.from_json(broadcast.segment)
        broadcast.total = await segments.materialize(session, broadcast.id, segment, now)
        broadcast.started_at = now
        await segments.refresh_statistics(session)
    await session.flush()
    return Taken(broadcast, unknown, materialized)


async def renew(session: AsyncSession, broadcast_id: int, owner: str, *, ttl: timedelta, now: datetime) -> bool:
    """Extend our lease; False when it is no longer ours (then stop: another worker has the broadcast)."""
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.lease_owner == owner)
        .values(lease_until=now + ttl)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, broadcast_id: int, owner: str) -> None:
    """Give the lease up (paused, cancelled, stopping): the dispatcher may start a sender at once."""
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def hand_over(
    session: AsyncSession, broadcast_id: int, owner: str, successor: str, *, ttl: timedelta, now: datetime
) -> bool:
    """Pass our lease to the continuation job's owner id, so it (and nobody else) carries on without a gap."""
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.lease_owner == owner)
        .values(lease_owner=successor, lease_until=now + ttl)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unattended(session: AsyncSession, now: datetime) -> list[tuple[int, str]]:
    """Running broadcasts nobody is sending (just started, resumed, or their sender died), each with a key that
    stays the same until someone takes the lease, so the dispatcher enqueues one job per such moment."""
    rows = await session.execute(
        select(Broadcast.id, Broadcast.lease_until, Broadcast.updated_at).where(
            Broadcast.status == BroadcastStatus.RUNNING,
            or_(Broadcast.lease_until.is_(None), Broadcast.lease_until < now),
        )
    )
    keys = []
    for broadcast_id, lease_until, updated_at in rows.all():
        moment = lease_until or updated_at
        keys.append((broadcast_id, f"{broadcast_id}:{int(moment.timestamp() * 1000)}"))
    return keys


async def open_deliveries(session: AsyncSession, broadcast_id: int) -> int:
    """Deliveries still waiting or on their way."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(BroadcastDelivery)
            .where(
                BroadcastDelivery.broadcast_id == broadcast_id,
                BroadcastDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.SENDING)),
            )
        )
        or 0
    )
