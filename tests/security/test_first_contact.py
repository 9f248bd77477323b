"""New customers' first requests race (issue 18 item 2): many requests of one new Telegram user at once create
exactly one user, and none of them fails."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, init_data, serve, tma

NEW_USERS = 20
REQUESTS_EACH = 4


async def test_parallel_first_requests_of_new_users_create_each_once(database_url: str, db: AsyncSession) -> None:
    async with serve(make_settings(database_url, bot_token=BOT_TOKEN), raise_app_exceptions=False) as (_, client):
        requests = [
            client.get("/api/me", headers=tma(init_data(5000 + user)))
            for user in range(NEW_USERS)
            for _ in range(REQUESTS_EACH)
        ]
        responses = await asyncio.gather(*requests)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: NEW_USERS * REQUESTS_EACH}, statuses
    # Every answer for one customer names the same user.
    ids: dict[int, set[int]] = {}
    for response in responses:
        ids.setdefault(response.json()["telegram_id"], set()).add(response.json()["id"])
    assert all(len(found) == 1 for found in ids.values()) and len(ids) == NEW_USERS
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(User)) == NEW_USERS
