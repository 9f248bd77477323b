"""Reads of the broadcasts section: the figures of one broadcast as the page and its event stream show them, the
reach of a segment before anything is written, and the history."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import segments, service
from app.broadcasts.segments import Segment
from app.config import Settings
from app.kit.clock import utcnow
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus, User

FINISHED = frozenset({BroadcastStatus.DONE, BroadcastStatus.CANCELLED})


@dataclass(frozen=True)
class Figures:
    """What the progress counters show. `blocked` are the failed deliveries whose recipient is now marked
    unreachable (blocked the bot or deleted the account: the sender marks them in the same commit), so `failed`
    here is the rest (Telegram refused that message)."""

    status: str
    total: int
    sent: int
    failed: int
    blocked: int
    unknown: int
    skipped: int
    pending: int
    rate: float
    eta_seconds: float | None
    finished: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def figures(session: AsyncSession, settings: Settings, broadcast_id: int) -> Figures:
    progress = await service.progress(session, settings, broadcast_id)
    blocked = 0
    if progress.failed:
        blocked = int(
            await session.scalar(
                select(func.count())
                .select_from(BroadcastDelivery)
                .join(User, User.id == BroadcastDelivery.user_id)
                .where(
                    BroadcastDelivery.broadcast_id == broadcast_id,
                    BroadcastDelivery.status == DeliveryStatus.FAILED,
                    User.unreachable_since.is_not(None),
                )
            )
            or 0
        )
        blocked = min(blocked, progress.failed)
    return Figures(
        status=progress.status.value,
        total=progress.total,
        sent=progress.sent,
        failed=progress.failed - blocked,
        blocked=blocked,
        unknown=progress.unknown,
        skipped=progress.skipped,
        pending=progress.pending,
        rate=round(progress.rate, 1),
        eta_seconds=round(progress.eta_seconds) if progress.eta_seconds is not None else None,
        finished=progress.status in FINISHED,
    )


@dataclass(frozen=True)
class Reach:
    total: int
    by_language: dict[str, int]


async def reach(session: AsyncSession, segment: Segment) -> Reach:
    """Who the segment reaches now (one grouped COUNT: the same condition the start materializes)."""
    by_language = await segments.count_by_language(session, segment, utcnow())
    return Reach(sum(by_language.values()), by_language)


async def history(session: AsyncSession, *, limit: int = 100) -> list[Broadcast]:
    """The newest first, with their stored counts (the sender keeps them on the row)."""
    return await service.list_broadcasts(session, limit=limit)
