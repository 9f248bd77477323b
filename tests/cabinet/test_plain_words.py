"""Plain words on the customer's pages (issue 20): an expired Telegram sign-in asks, in the customer's own
language, to reopen the app; the frame (language, title, demo badge) comes with every page swap; auto-renewal
without a saved method says what will happen; sessions read as browser and system; the browser cabinet is not
offered "Open in browser"."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.sessions import start_session
from app.config import Settings
from app.models import SavedPaymentMethod
from tests.conftest import make_settings
from tests.factories import add_subscriber
from tests.web import BOT_TOKEN, browser_session, htmx, serve, text_of, tma

CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, demo_mode=True, demo_payments_enabled=True)


@pytest.fixture
async def web(web_settings: Settings, db: AsyncSession) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(web_settings) as pair:
        yield pair


@pytest.mark.parametrize(("swap", "target"), [(True, "content"), (False, None)])
async def test_expired_sign_in_asks_to_reopen_the_app_in_the_customers_language(
    web: tuple[FastAPI, httpx.AsyncClient], swap: bool, target: str | None
) -> None:
    _, client = web
    headers = tma(language="ru", age=timedelta(days=2)) | {"accept-language": "en-US,en"}
    response = await client.get("/app/connect", headers=headers | (htmx(target or "content") if swap else {}))
    assert response.status_code == 401
    page = text_of(response.text)
    assert "Откройте приложение заново" in page and "Закройте его и откройте снова из Telegram" in page
    assert "init_data_expired" not in page and "401" not in page and "Sign in" not in page  # no raw code
    assert 'data-lang="ru"' in response.text  # the frame too, swapped along or in the whole page


async def test_every_page_swap_brings_its_frame_in_the_pages_language(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    english = await client.get("/app/settings", headers=tma(language="en") | htmx())
    frame = re.search(r'<div id="frame" hx-swap-oob="true" data-lang="(\w+)" data-title="([^"]+)">', english.text)
    assert frame and frame.groups() == ("en", "Settings") and "Demo mode" in english.text

    switched = await client.post("/app/settings/language", headers=tma(language="en") | htmx(), data={"language": "ru"})
    frame = re.search(r'<div id="frame" hx-swap-oob="true" data-lang="(\w+)" data-title="([^"]+)">', switched.text)
    assert frame and frame.groups() == ("ru", "Настройки") and "Демо-режим" in switched.text
    block = await client.get("/app/help/search", params={"q": "x"}, headers=tma() | htmx("faq_results"))
    assert 'id="frame"' not in block.text  # only whole-page swaps carry it


async def test_settings_offer_hindi_and_indonesian_and_switch_to_them(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    english = await client.get("/app/settings", headers=tma(language="en") | htmx())
    for code, name in (("ru", "Русский"), ("en", "English"), ("hi", "हिन्दी"), ("id", "Bahasa Indonesia")):
        assert re.search(rf'value="{code}"[^>]*lang="{code}">{name}</button>', english.text), code

    hindi = await client.post("/app/settings/language", headers=tma(language="en") | htmx(), data={"language": "hi"})
    frame = re.search(r'<div id="frame" hx-swap-oob="true" data-lang="(\w+)" data-title="([^"]+)">', hindi.text)
    assert frame and frame.groups() == ("hi", "सेटिंग्स") and "डेमो मोड" in hindi.text
    home = text_of((await client.get("/app", headers=tma() | htmx())).text)
    assert "नमस्ते" in home  # the choice sticks to the customer, whatever Telegram's language

    indonesian = await client.post("/app/settings/language", headers=tma() | htmx(), data={"language": "id"})
    assert 'data-lang="id" data-title="Pengaturan"' in indonesian.text and "Mode demo" in indonesian.text


async def test_auto_renewal_without_a_saved_method_says_what_will_happen(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession
) -> None:
    _, client = web
    user, subscription = await add_subscriber(db, 777)
    user.language, subscription.auto_renew = "en", True
    await db.commit()
    home = text_of((await client.get("/app", headers=tma() | htmx())).text)
    assert "On, but no payment method is saved" in home
    user.language = "ru"
    await db.commit()
    settings = await client.get("/app/settings", headers=tma() | htmx())
    assert "Способ оплаты не сохранён, поэтому ничего не спишется" in text_of(settings.text)

    db.add(
        SavedPaymentMethod(
            user_id=user.id,
            provider="demo",
            method_type="card",
            title="Demo card",
            secret_encrypted="-",
            fingerprint="f",
        )
    )
    user.language = "en"
    await db.commit()
    home = (await client.get("/app", headers=tma() | htmx())).text
    assert re.search(r'data-testid="auto-renew">on<', home)  # a saved card renews it: plainly "on"

    subscription.auto_renew = False
    await db.commit()
    home = (await client.get("/app", headers=tma() | htmx())).text
    assert re.search(r'data-testid="auto-renew">off<', home) and "no payment method" not in home


async def test_the_browser_cabinet_lists_sessions_by_browser_and_is_not_offered_open_in_browser(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    _, client = web
    user, _ = await add_subscriber(db, 777)
    user.language = "en"
    await start_session(db, user, ttl=timedelta(days=1), user_agent=CHROME_ON_WINDOWS, ip="127.0.0.1")
    await browser_session(client, db, user, web_settings)  # this one says "pytest": nothing recognisable
    page = await client.get("/app/settings", headers=htmx())
    devices = [text_of(found) for found in re.findall(r'data-testid="session-device">(.*?)<br>', page.text)]
    assert sorted(devices) == ["Chrome · Windows", "Unknown browser"]
    assert 'title="Mozilla/5.0 (Windows NT' in page.text  # the whole string stays at hand
    assert "/app/settings/browser-login" not in page.text

    client.cookies.clear()
    in_telegram = await client.get("/app/settings", headers=tma() | htmx())
    assert 'hx-post="/app/settings/browser-login"' in in_telegram.text
