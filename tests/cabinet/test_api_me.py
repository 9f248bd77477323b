"""GET /api/me with Telegram initData: users created once, forged or stale data refused with no change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User
from tests.conftest import make_settings
from tests.factories import add_account, add_server, add_subscriber
from tests.web import BOT_TOKEN, init_data, serve, tma


@pytest.fixture
async def api(database_url: str, db: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(database_url, bot_token=BOT_TOKEN)) as (_, client):
        yield client


async def user_count(db: AsyncSession) -> int:
    await db.rollback()  # see what the app committed
    return await db.scalar(select(func.count()).select_from(User)) or 0


async def test_first_request_creates_the_user_and_later_ones_reuse_it(api: httpx.AsyncClient, db: AsyncSession) -> None:
    first = await api.get("/api/me", headers=tma(init_data()))
    assert first.status_code == 200
    body = first.json()
    assert body["telegram_id"] == 777 and body["language"] == "en" and body["subscription"] is None
    again = await api.get("/api/me", headers=tma(init_data()))
    assert again.json()["id"] == body["id"]
    assert await user_count(db) == 1


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        ({"authorization": "Bearer abc"}, "not_authenticated"),
        (tma("user=%7B%22id%22%3A1%7D&auth_date=1&hash=00"), "init_data_invalid"),
        (tma(init_data(token="1:another-bot")), "init_data_invalid"),
        (tma(init_data(age=timedelta(days=2))), "init_data_expired"),
    ],
)
async def test_bad_credentials_get_401_and_create_nothing(
    api: httpx.AsyncClient, db: AsyncSession, headers: dict[str, str], code: str
) -> None:
    response = await api.get("/api/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert await user_count(db) == 0


async def test_referral_start_param_links_the_new_user_once(api: httpx.AsyncClient, db: AsyncSession) -> None:
    referrer = User(telegram_id=1, referral_code="friend")
    db.add(referrer)
    await db.commit()
    response = await api.get("/api/me", headers=tma(init_data(start_param="ref_friend")))
    await db.rollback()
    user = await db.get(User, response.json()["id"])
    assert user is not None and user.referrer_id == referrer.id
    # An unknown code links nobody.
    other = await api.get("/api/me", headers=tma(init_data(778, start_param="ref_nobody")))
    await db.rollback()
    assert (await db.get(User, other.json()["id"])).referrer_id is None


async def test_blocked_user_is_told_why(api: httpx.AsyncClient, db: AsyncSession) -> None:
    db.add(User(telegram_id=777, referral_code="blocked", is_blocked=True, block_reason="chargeback"))
    await db.commit()
    response = await api.get("/api/me", headers=tma(init_data()))
    assert response.status_code == 403
    assert "chargeback" in response.json()["error"]["message"]


async def test_subscription_and_mirror_link_are_reported(api: httpx.AsyncClient, db: AsyncSession) -> None:
    server = await add_server(db)
    _, subscription = await add_subscriber(db, 777, ends_in=timedelta(days=10, hours=1))
    await add_account(db, server, subscription, sub_token="tok123", used_traffic_bytes=5, traffic_limit_bytes=100)
    await db.commit()
    body = (await api.get("/api/me", headers=tma(init_data()))).json()
    assert body["subscription"]["status"] == "active"
    assert body["subscription"]["days_left"] == 10
    assert body["subscription"]["subscription_link"].endswith("/sub/tok123")
    assert body["subscription"]["traffic_used_bytes"] == 5
