"""Browser sign-in: one-time links and codes (single use, 10 minutes, bound to the user), the Telegram Login
Widget, CSRF on cookie-authenticated forms, session listing and revocation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.sessions import SESSION_COOKIE
from app.auth.telegram_widget import sign_widget_login
from app.config import Settings
from app.kit.clock import FrozenClock, set_clock, utcnow
from app.models import AuditLog, BrowserSession, User
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, browser_session, htmx, serve, text_of, tma


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, bot_username="vpnshop_bot")


@pytest.fixture
async def web(web_settings: Settings, db: AsyncSession) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(web_settings) as pair:
        yield pair


async def issue(client: httpx.AsyncClient) -> tuple[str, str]:
    """Ask for a browser login from inside the Mini App; returns (link path, code)."""
    response = await client.post("/app/settings/browser-login", headers=tma() | htmx("browser_login"))
    assert response.status_code == 200, response.text
    link = re.search(r'href="http://127\.0\.0\.1:8000(/login/link/[^"]+)"', response.text)
    code = re.search(r'data-testid="login-code">([A-Z0-9-]+)<', response.text)
    assert link and code, response.text
    return link.group(1), code.group(1)


def fresh_browser(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def login_csrf(browser: httpx.AsyncClient) -> str:
    page = await browser.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


async def test_a_login_link_works_once(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    app, client = web
    link, _ = await issue(client)
    async with fresh_browser(app) as browser:
        signed_in = await browser.get(link)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/app"
        assert SESSION_COOKIE in browser.cookies
        home = await browser.get("/app")
        assert home.status_code == 200 and "Hello, Ann!" in text_of(home.text)
    async with fresh_browser(app) as thief:
        replay = await thief.get(link)
        assert replay.status_code == 401 and 'data-testid="login-error"' in replay.text
        assert SESSION_COOKIE not in thief.cookies
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(BrowserSession)) == 1


async def test_a_code_signs_in_and_also_retires_the_link(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = web
    link, code = await issue(client)
    async with fresh_browser(app) as browser:
        token = await login_csrf(browser)
        response = await browser.post("/login/code", data={"code": code.lower().replace("-", " "), "csrf_token": token})
        assert response.status_code == 303
        assert (await browser.get("/app")).status_code == 200
    async with fresh_browser(app) as other:
        assert (await other.get(link)).status_code == 401


async def test_a_new_pair_retires_the_previous_one(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = web
    old_link, _ = await issue(client)
    new_link, _ = await issue(client)
    async with fresh_browser(app) as browser:
        assert (await browser.get(old_link)).status_code == 401
        assert (await browser.get(new_link)).status_code == 303


async def test_links_expire_after_ten_minutes(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = web
    clock = FrozenClock(utcnow())
    set_clock(clock)
    try:
        link, _ = await issue(client)
        clock.advance(minutes=10, seconds=1)
        async with fresh_browser(app) as browser:
            response = await browser.get(link)
            assert response.status_code == 401 and SESSION_COOKIE not in browser.cookies
    finally:
        set_clock(None)


async def test_wrong_codes_are_refused_and_then_rate_limited(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, _ = web
    async with fresh_browser(app) as browser:
        token = await login_csrf(browser)
        for _ in range(10):
            wrong = await browser.post("/login/code", data={"code": "AAAA-AAAA", "csrf_token": token})
            assert wrong.status_code == 401 and 'data-testid="login-error"' in wrong.text
        limited = await browser.post("/login/code", data={"code": "AAAA-AAAA", "csrf_token": token})
        assert limited.status_code == 429 and "retry-after" in limited.headers


async def test_login_forms_need_the_login_csrf_cookie(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = web
    _, code = await issue(client)
    async with fresh_browser(app) as browser:
        refused = await browser.post("/login/code", data={"code": code, "csrf_token": "forged"})
        assert refused.status_code == 403 and SESSION_COOKIE not in browser.cookies
        token = await login_csrf(browser)
        assert (await browser.post("/login/code", data={"code": code, "csrf_token": token})).status_code == 303


async def test_cookie_forms_without_a_csrf_token_change_nothing(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    _, client = web
    user = User(telegram_id=9, referral_code="c9", language="ru")
    db.add(user)
    await db.flush()
    csrf = await browser_session(client, db, user, web_settings)
    for headers, data in (({}, {"language": "en"}), ({"x-csrf-token": "0" * 64}, {"language": "en"})):
        refused = await client.post("/app/settings/language", data=data, headers=headers)
        assert refused.status_code == 403 and "csrf_failed" in refused.text
    await db.refresh(user)
    assert user.language == "ru"
    accepted = await client.post("/app/settings/language", data={"language": "en", "csrf_token": csrf})
    assert accepted.status_code == 303
    await db.refresh(user)
    assert user.language == "en"
    by_header = await client.post(
        "/app/settings/language", data={"language": "ru"}, headers={"x-csrf-token": csrf} | htmx()
    )
    assert by_header.status_code == 200 and "Настройки" in by_header.text


async def test_an_unknown_language_is_refused(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    _, client = web
    assert (await client.get("/app", headers=tma() | htmx())).status_code == 200
    response = await client.post("/app/settings/language", data={"language": "xx"}, headers=tma() | htmx())
    assert response.status_code == 422 and "language" in response.text
    await db.rollback()
    user = await db.scalar(select(User))
    assert user is not None and user.language == "en"


async def test_sessions_are_listed_and_revocable(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    user = User(telegram_id=777, referral_code="s1", language="en")
    db.add(user)
    await db.flush()
    async with fresh_browser(app) as laptop:
        await browser_session(laptop, db, user, web_settings)
        assert (await laptop.get("/app")).status_code == 200
        await db.rollback()
        session_id = await db.scalar(select(BrowserSession.id))
        page = await client.get("/app/settings", headers=tma() | htmx())
        assert f"/app/settings/sessions/{session_id}/revoke" in page.text
        revoked = await client.post(f"/app/settings/sessions/{session_id}/revoke", headers=tma() | htmx())
        assert revoked.status_code == 200
        locked_out = await laptop.get("/app", headers=htmx())
        assert locked_out.status_code == 401
        again = await client.post(f"/app/settings/sessions/{session_id}/revoke", headers=tma() | htmx())
        assert again.status_code == 404


async def test_logout_ends_the_session(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    _, client = web
    user = User(telegram_id=5, referral_code="l5")
    db.add(user)
    await db.flush()
    csrf = await browser_session(client, db, user, web_settings)
    out = await client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.clear()
    await db.rollback()
    record = await db.scalar(select(BrowserSession))
    assert record is not None and record.revoked_at is not None


async def test_the_telegram_login_widget_signs_in(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    app, _ = web
    fields = {"id": "4321", "first_name": "Widget", "username": "w", "auth_date": str(int(utcnow().timestamp()))}
    params = sign_widget_login(fields, BOT_TOKEN)
    async with fresh_browser(app) as browser:
        tampered = await browser.get("/auth/telegram/widget", params=params | {"id": "1"})
        assert tampered.status_code == 401 and SESSION_COOKIE not in browser.cookies
        webapp_keyed = await browser.get(
            "/auth/telegram/widget", params=fields | {"hash": tma()["authorization"][-64:]}
        )
        assert webapp_keyed.status_code == 401
        ok = await browser.get("/auth/telegram/widget", params=params)
        assert ok.status_code == 303 and SESSION_COOKIE in browser.cookies
    await db.rollback()
    assert await db.scalar(select(User.first_name).where(User.telegram_id == 4321)) == "Widget"
    assert await db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "session.started")) == 1


async def test_next_must_stay_on_this_site(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = web
    _, code = await issue(client)
    async with fresh_browser(app) as browser:
        token = await login_csrf(browser)
        response = await browser.post(
            "/login/code", data={"code": code, "csrf_token": token, "next": "//evil.example/x"}
        )
        assert response.status_code == 303 and response.headers["location"] == "/app"
