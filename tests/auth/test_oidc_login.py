"""OpenID Connect in the browser cabinet, end to end over HTTP against a local provider emulator: an unlinked
account is refused, linking from Settings, then signing in with it; Telegram's OIDC signs in by Telegram id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import oidc
from app.auth.sessions import SESSION_COOKIE
from app.kit.http import reset_breakers
from app.models import User, UserIdentity
from tests.conftest import make_settings
from tests.emulators.oidc import OidcEmulator, OidcHub, OidcUser
from tests.web import BOT_TOKEN, browser_session, serve, text_of

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def hub() -> Iterator[OidcHub]:
    with OidcHub.serve() as served:
        yield served


@pytest.fixture
def providers(hub: OidcHub) -> Iterator[dict[str, OidcEmulator]]:
    oidc.reset_caches()
    reset_breakers()
    emulators = {
        "google": OidcEmulator(redirect_uris=[f"{BASE}/auth/oidc/google/callback"], user=OidcUser(subject="g-1")),
        "telegram": OidcEmulator(
            redirect_uris=[f"{BASE}/auth/oidc/telegram/callback"], user=OidcUser(subject="tg-sub", telegram_id=777)
        ),
    }
    for name, emulator in emulators.items():
        hub.mount(emulator, name)
    yield emulators
    for emulator in emulators.values():
        hub.unmount(emulator)
    oidc.reset_caches()


def entry(name: str, emulator: OidcEmulator, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "title": name.title(),
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "server_metadata_url": f"{emulator.issuer}/.well-known/openid-configuration",
        **extra,
    }


@pytest.fixture
async def web(
    database_url: str, db: AsyncSession, providers: dict[str, OidcEmulator]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    configured = [
        entry("google", providers["google"]),
        entry("telegram", providers["telegram"], telegram_id_claim="id"),
    ]
    settings = make_settings(database_url, bot_token=BOT_TOKEN, oidc_providers=configured)
    async with serve(settings) as pair:
        yield pair


async def round_trip(browser: httpx.AsyncClient, name: str, **params: str) -> httpx.Response:
    """Start at our site, let the provider consent, come back to our callback; returns our final answer."""
    start = await browser.get(f"/auth/oidc/{name}/start", params=params)
    assert start.status_code == 303, start.text
    async with httpx.AsyncClient() as provider_side:
        consent = await provider_side.get(start.headers["location"])
    assert consent.status_code in {302, 303}, consent.text
    back = httpx.URL(consent.headers["location"])
    assert str(back).startswith(f"{BASE}/auth/oidc/{name}/callback")
    return await browser.get(back.raw_path.decode())


async def test_an_unlinked_account_cannot_sign_in(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, browser = web
    answer = await round_trip(browser, "google")
    assert answer.status_code == 401 and 'data-testid="login-error"' in answer.text
    assert SESSION_COOKIE not in browser.cookies


async def test_link_in_settings_then_sign_in_with_it(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    app, browser = web
    user = User(telegram_id=555, referral_code="o1", language="en", first_name="Olga")
    db.add(user)
    await db.flush()
    await browser_session(browser, db, user, app.state.settings)
    linked = await round_trip(browser, "google", intent="link")
    assert linked.status_code == 303 and linked.headers["location"] == "/app/settings"
    await db.rollback()
    identity = await db.scalar(select(UserIdentity))
    assert identity is not None and (identity.user_id, identity.provider, identity.subject) == (
        user.id,
        "google",
        "g-1",
    )

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as other:
        signed_in = await round_trip(other, "google", next="/app/settings")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/app/settings"
        page = await other.get("/app/settings")
        assert page.status_code == 200 and "google" in text_of(page.text)


async def test_linking_needs_a_browser_session(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    _, browser = web
    refused = await browser.get("/auth/oidc/google/start", params={"intent": "link"})
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(UserIdentity)) == 0


async def test_telegram_oidc_signs_in_by_telegram_id(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    _, browser = web
    db.add(User(telegram_id=777, referral_code="t7", language="en", first_name="Ann"))
    await db.commit()
    answer = await round_trip(browser, "telegram")
    assert answer.status_code == 303 and SESSION_COOKIE in browser.cookies
    assert "Hello, Ann!" in text_of((await browser.get("/app")).text)


async def test_a_forged_state_is_refused(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, browser = web
    start = await browser.get("/auth/oidc/google/start")
    assert start.status_code == 303
    browser.cookies.set("vpnshop_oidc", "forged", path="/auth/oidc/google/callback")
    async with httpx.AsyncClient() as provider_side:
        consent = await provider_side.get(start.headers["location"])
    answer = await browser.get(httpx.URL(consent.headers["location"]).raw_path.decode())
    assert answer.status_code == 401 and SESSION_COOKIE not in browser.cookies


async def test_unknown_provider_is_404(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, browser = web
    assert (await browser.get("/auth/oidc/nope/start")).status_code == 404
