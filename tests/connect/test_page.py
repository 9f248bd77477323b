"""The "Get config" page over HTTP: link, QR and guides; reissue (confirmed by the old link dying, rate
limited); the devices the panel has seen and their removal; the https bridge into client apps."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.kit.crypto import cipher
from app.models import AuditLog, OutboxMessage, Plan, VpnAccount
from tests.conftest import make_settings
from tests.connect.test_qr import drawn_modules, segno_modules
from tests.factories import add_server
from tests.web import BOT_TOKEN, drain_outbox, htmx, serve, text_of, tma

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN)


@pytest.fixture
async def web(web_settings: Settings, db: AsyncSession) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serve(web_settings) as pair:
        yield pair


async def trial_account(app: FastAPI, client: httpx.AsyncClient, db: AsyncSession) -> VpnAccount:
    await add_server(db)
    db.add(Plan(code="month", name={"en": "Month"}, duration_days=30, device_limit=2))  # the trial's limits
    await db.commit()
    assert (await client.post("/api/trial", headers=tma())).status_code == 201
    await drain_outbox(app)
    await db.rollback()
    account = await db.scalar(select(VpnAccount))
    assert account is not None and account.provisioned_at is not None
    return account


async def test_without_a_subscription_the_page_says_so(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    response = await client.get("/app/connect", headers=tma() | htmx())
    assert response.status_code == 200 and "no active subscription" in text_of(response.text)


async def test_the_page_shows_link_qr_and_the_visitors_platform(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    account = await trial_account(app, client, db)
    response = await client.get("/app/connect", headers=tma() | htmx() | {"user-agent": IPHONE})
    link = f"http://127.0.0.1:8000/sub/{account.sub_token}"
    assert f'data-testid="sub-link">{link}<' in response.text
    assert f'data-copy="{link}"' in response.text
    assert re.search(r'data-testid="qr" role="img" aria-label="[^"]+">\s*<svg', response.text)
    # Connect first: this iPhone's one-tap import leads the page, the link and QR wait behind a tap, and the
    # guides are collapsed.
    first = re.search(r'data-testid="connect-first">(.*?)</section>', response.text, re.S)
    assert first and f'href="http://127.0.0.1:8000/connect/{account.sub_token}/v2raytun" data-open-link' in first[1]
    assert "Add to v2RayTun" in text_of(first[1]) and "apps.apple.com" in first[1]
    assert response.text.index('data-testid="one-tap-import"') < response.text.index('data-testid="sub-link"')
    assert re.search(r'<details class="other-device" data-testid="link-and-qr">', response.text)
    assert re.search(r'id="platform-ios" data-current>', response.text) and " open>" not in response.text


async def test_reissue_kills_the_old_link_and_is_rate_limited(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    account = await trial_account(app, client, db)
    tokens = [account.sub_token]
    for _ in range(3):
        response = await client.post("/app/connect/reissue", headers=tma() | htmx())
        assert response.status_code == 200 and "here is your new link" in text_of(response.text)
        await db.rollback()
        tokens.append(await db.scalar(select(VpnAccount.sub_token)))
    assert len(set(tokens)) == 4
    assert (await client.get(f"/sub/{tokens[0]}")).status_code == 404
    page = await client.get("/app/connect", headers=tma() | htmx())  # the QR code is the new link's
    drawn = re.search(r'<path fill="currentColor" d="([^"]+)"', page.text)
    assert drawn and drawn_modules(drawn[1]) == segno_modules(f"http://127.0.0.1:8000/sub/{tokens[-1]}")
    limited = await client.post("/app/connect/reissue", headers=tma() | htmx())
    assert limited.status_code == 429
    await db.rollback()
    assert await db.scalar(select(VpnAccount.sub_token)) == tokens[-1]
    assert (
        await db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "vpn_account.reissued"))
        == 3
    )
    revokes = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.topic.like("%revoke%"))
    assert await db.scalar(revokes) == 3


async def test_devices_seen_by_the_panel_are_listed_and_removable(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    account = await trial_account(app, client, db)
    # A client app fetches the subscription from the (demo) panel, which registers its hardware id.
    panel_link = urlparse(cipher().decrypt(account.subscription_url_encrypted or ""))
    fetched = await client.get(
        panel_link.path,
        headers={"x-hwid": "hwid-phone-1", "x-device-model": "Pixel 8", "user-agent": "v2rayNG/1.9"},
    )
    assert fetched.status_code == 200
    listed = await client.get("/app/connect/devices", headers=tma() | htmx("devices"))
    assert listed.status_code == 200 and "Pixel 8" in listed.text
    unknown = await client.post("/app/connect/devices/nope/remove", headers=tma() | htmx("devices"))
    assert unknown.status_code == 404
    removed = await client.post("/app/connect/devices/hwid-phone-1/remove", headers=tma() | htmx("devices"))
    assert removed.status_code == 200 and "Pixel 8" not in removed.text and "Device removed" in removed.text


async def test_the_bridge_opens_the_app_only_for_a_live_token(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    app, client = web
    account = await trial_account(app, client, db)
    page = await client.get(f"/connect/{account.sub_token}/hiddify")
    assert (
        page.status_code == 200
        and f'href="hiddify://import/http://127.0.0.1:8000/sub/{account.sub_token}"' in page.text
    )
    # "copy this link" when the app did not open: the link is right there, with its copy button.
    assert f'data-testid="sub-link">http://127.0.0.1:8000/sub/{account.sub_token}</code>' in page.text
    assert f'data-copy="http://127.0.0.1:8000/sub/{account.sub_token}"' in page.text
    assert (await client.get("/connect/not-a-token/hiddify")).status_code == 404
    assert (await client.get(f"/connect/{account.sub_token}/no-such-app")).status_code == 404


async def test_the_old_address_redirects_to_the_connect_page(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    response = await client.get("/app/config?from=notification", follow_redirects=False)
    assert response.status_code == 308 and response.headers["location"] == "/app/connect?from=notification"
