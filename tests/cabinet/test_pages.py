"""The customer pages over HTTP: the shell for credential-less first loads, the home page in both languages
within three queries, the trial from offer to a provisioned account, usage, and the settings page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.kit.clock import utcnow
from app.models import AuditLog, Subscription, TrialGrant, UsageDaily, User, VpnAccount
from tests.conftest import make_settings
from tests.factories import add_account, add_server, add_subscriber
from tests.web import BOT_TOKEN, browser_session, count_queries, drain_outbox, htmx, serve, text_of, tma

GIB = 2**30


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, trial_days=7)


@pytest.fixture
async def web(web_settings: Settings, db: AsyncSession) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(web_settings) as pair:
        yield pair


async def test_a_first_load_without_credentials_gets_the_shell(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    response = await client.get("/app/settings?x=1")
    assert response.status_code == 200
    assert 'id="shell" data-src="/app/settings?x=1"' in response.text
    assert "/login?next=/app/settings%3Fx%3D1" in response.text


async def test_an_htmx_request_without_credentials_is_refused(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    response = await client.get("/app", headers=htmx())
    assert response.status_code == 401
    assert "<html" not in response.text and 'href="/login"' in response.text


@pytest.mark.parametrize(
    ("language", "greeting", "offer"),
    [("en", "Hello, Ann!", "Start free trial"), ("ru", "Привет, Ann!", "Попробовать бесплатно")],
)
async def test_home_offers_the_trial_in_the_users_language(
    web: tuple[FastAPI, httpx.AsyncClient], language: str, greeting: str, offer: str
) -> None:
    _, client = web
    response = await client.get("/app", headers=tma(language=language) | htmx())
    assert response.status_code == 200
    assert "<html" not in response.text  # only the content block
    page = text_of(response.text)
    assert greeting in page and offer in page


async def test_home_shows_the_subscription_within_three_queries(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    server = await add_server(db)
    user, subscription = await add_subscriber(db, 777, ends_in=timedelta(days=12, hours=2))
    user.language = "en"
    await add_account(
        db,
        server,
        subscription,
        used_traffic_bytes=3 * GIB,
        traffic_limit_bytes=50 * GIB,
        device_limit=3,
        provisioned_at=utcnow(),
    )
    await db.commit()
    await client.get("/app", headers=tma() | htmx())  # first sight refreshes the profile; measure a normal visit
    with count_queries(app) as statements:
        response = await client.get("/app", headers=tma() | htmx())
    page = text_of(response.text)
    assert "Active" in page and "12 days" in page and "3 GB of 50 GB" in page and "up to 3 devices" in page
    assert 0 < len(statements) <= 3, statements

    await browser_session(client, db, user, web_settings)
    await client.get("/app")
    with count_queries(app) as statements:
        response = await client.get("/app")
    assert response.status_code == 200 and "<html" in response.text and "12 days" in text_of(response.text)
    assert 0 < len(statements) <= 3, statements


async def test_the_trial_is_provisioned_and_the_page_follows(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    await add_server(db)
    await db.commit()
    started = await client.post("/app/trial", headers=tma() | htmx("status_card"))
    assert started.status_code == 200
    assert 'hx-trigger="every 1s"' in started.text and "Setting up your VPN" in text_of(started.text)

    await drain_outbox(app)
    ready = await client.get("/app", headers=tma() | htmx("status_card"))
    assert "every 1s" not in ready.text and "Free trial" in text_of(ready.text) and "7 days" in text_of(ready.text)

    again = await client.post("/app/trial", headers=tma() | htmx("status_card"))
    assert again.status_code == 409 and "trial_used" in again.text
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(TrialGrant)) == 1
    assert await db.scalar(select(func.count()).select_from(Subscription)) == 1
    account = await db.scalar(select(VpnAccount))
    assert account is not None and account.provisioned_at is not None
    assert await db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "trial.activated")) == 1


async def test_api_trial_answers_409_the_second_time(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    _, client = web
    await add_server(db)
    await db.commit()
    first = await client.post("/api/trial", headers=tma())
    assert first.status_code == 201
    body = first.json()
    assert body["subscription"]["is_trial"] and body["subscription"]["status"] == "trial"
    assert body["subscription"]["days_left"] == 7 and body["subscription"]["ready"] is False
    second = await client.post("/api/trial", headers=tma())
    assert second.status_code == 409 and second.json()["error"]["code"] == "trial_used"


async def test_a_returning_telegram_account_gets_no_second_trial(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession
) -> None:
    _, client = web
    await add_server(db)
    db.add(TrialGrant(user_id=None, telegram_id=777))  # granted to an account since deleted
    await db.commit()
    home = await client.get("/app", headers=tma() | htmx())
    assert "Start free trial" not in text_of(home.text) and "Choose a plan" in text_of(home.text)
    refused = await client.post("/api/trial", headers=tma())
    assert refused.status_code == 409
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(Subscription)) == 0


async def test_usage_page_charts_the_days_with_traffic(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    _, client = web
    server = await add_server(db)
    user, subscription = await add_subscriber(db, 777)
    user.language = "en"
    account = await add_account(db, server, subscription, online_at=utcnow())
    today = utcnow().astimezone(web_settings.zone).date()
    for offset, gib in ((0, 2), (3, 1)):
        db.add(
            UsageDaily(
                vpn_account_id=account.id,
                user_id=user.id,
                day=today - timedelta(days=offset),
                upload_bytes=0,
                download_bytes=gib * GIB,
                connections=1,
            )
        )
    db.add(
        UsageDaily(
            vpn_account_id=account.id,
            user_id=user.id,
            day=today - timedelta(days=40),
            upload_bytes=0,
            download_bytes=9 * GIB,
            connections=1,
        )
    )  # outside the period
    await db.commit()
    response = await client.get("/app/usage", headers=tma() | htmx())
    assert response.status_code == 200
    assert response.text.count("<rect") == 30
    assert "3 GB" in text_of(response.text)  # the 30-day total leaves out the 40-day-old row


async def test_blocked_users_see_why(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    _, client = web
    db.add(User(telegram_id=777, referral_code="blk", is_blocked=True, block_reason="chargeback"))
    await db.commit()
    response = await client.get("/app", headers=tma() | htmx())
    assert response.status_code == 403 and "chargeback" in response.text
