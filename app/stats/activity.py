"""The daily activity record: one row per customer per day they opened the app. Written by the same code that
keeps users.last_seen_at, and only when that moves to a new day, so a busy customer costs one insert a day."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import insert_for
from app.models import UserActivityDay
from app.stats.periods import day_of


def is_new_day(previous: datetime | None, now: datetime) -> bool:
    """Whether a customer last seen at `previous` is seen for the first time today."""
    return previous is None or day_of(previous) != day_of(now)


async def record_active_day(session: AsyncSession, user_id: int, now: datetime) -> None:
    """Mark the customer active on `now`'s day; a second call the same day (another process) changes nothing."""
    statement = insert_for(session, UserActivityDay).values(day=day_of(now), user_id=user_id)
    await session.execute(statement.on_conflict_do_nothing(index_elements=["day", "user_id"]))
