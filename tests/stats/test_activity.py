"""The daily activity record: written the first time a customer is seen each UTC day, by any way in, and never
on the requests in between."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import FrozenClock
from app.models import User, UserActivityDay
from app.users.service import mark_seen
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, browser_session, count_queries, serve, tma

LATE = datetime(2026, 3, 14, 23, 58, tzinfo=UTC)


async def _days(db: AsyncSession, user_id: int) -> list[date]:
    db.expire_all()
    return list(await db.scalars(select(UserActivityDay.day).where(UserActivityDay.user_id == user_id).order_by("day")))


async def test_mark_seen_writes_one_row_a_day_and_moves_last_seen_onto_the_new_day(db: AsyncSession) -> None:
    user = User(telegram_id=5, referral_code="r5")
    db.add(user)
    await db.flush()
    await mark_seen(db, user, LATE)
    await mark_seen(db, user, LATE + timedelta(minutes=1))  # same day, within the resolution: nothing
    assert user.last_seen_at == LATE
    # Three minutes later it is the next day: a row, and last_seen_at moves although 5 minutes have not passed.
    await mark_seen(db, user, LATE + timedelta(minutes=3))
    assert user.last_seen_at == LATE + timedelta(minutes=3)
    await mark_seen(db, user, LATE + timedelta(hours=5))
    await db.commit()
    assert await _days(db, user.id) == [date(2026, 3, 14), date(2026, 3, 15)]


async def test_the_mini_app_and_the_browser_cabinet_record_the_day(
    db: AsyncSession, database_url: str, freeze: Callable[[datetime], FrozenClock]
) -> None:
    clock = freeze(LATE)
    settings = make_settings(database_url, bot_token=BOT_TOKEN)
    async with serve(settings) as (app, client):
        assert (await client.get("/app", headers=tma(user_id=900))).status_code == 200
        user = await db.scalar(select(User).where(User.telegram_id == 900))
        assert user is not None
        user_id = user.id
        assert await _days(db, user_id) == [date(2026, 3, 14)]

        # The next request the same day only reads: no activity write, no last_seen_at write.
        clock.advance(seconds=30)
        with count_queries(app) as statements:
            assert (await client.get("/app", headers=tma(user_id=900))).status_code == 200
        assert not [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]

        # After midnight, in the browser cabinet (a cookie session): the new day is recorded.
        clock.advance(minutes=5)
        await browser_session(client, db, await db.get_one(User, user_id), settings)
        assert (await client.get("/app")).status_code == 200
        assert await _days(db, user_id) == [date(2026, 3, 14), date(2026, 3, 15)]
        assert (await db.get_one(User, user_id)).last_seen_at == clock.current
