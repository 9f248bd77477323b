"""The /sub/{token} mirror against a stand-in for a panel's public subscription endpoint on a real port:
relaying, the short per-device cache, rate limiting, revocation, and the answers when the panel cannot help."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.crypto import cipher
from app.kit.http import reset_breakers
from app.main import create_app
from app.models import PanelKind, VpnAccount
from app.panels.mirror_api import RATE_LIMIT
from tests.conftest import make_settings
from tests.emulators.harness import free_port, serve
from tests.emulators.remnawave import RemnawaveEmulator
from tests.factories import add_account, add_server, add_subscriber

CLIENT_HEADERS = {
    "user-agent": "Happ/3.0.1",
    "accept": "*/*",
    "x-hwid": "device-1",
    "x-device-os": "iOS",
    "x-ver-os": "18.1",
    "x-device-model": "iPhone15,2",
}


@dataclass
class Upstream:
    """A panel's public subscription endpoint (Remnawave-style path), counting what reaches it."""

    base_url: str = ""
    hits: list[dict[str, str]] = field(default_factory=list)
    failing: bool = False

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/sub/{short_id}")
        async def subscription(short_id: str, request: Request) -> Response:
            self.hits.append(dict(request.headers))
            if self.failing:
                return PlainTextResponse("upstream exploded", status_code=500)
            if short_id == "unknown":
                return PlainTextResponse('{"message":"Not found"}', status_code=404)
            hwid = request.headers.get("x-hwid", "none")
            links = f"vless://{short_id}@nl.example:443?security=reality#{hwid}\n"
            return PlainTextResponse(
                base64.b64encode(links.encode()).decode(),
                headers={
                    "subscription-userinfo": "upload=0; download=1024; total=10737418240; expire=1795335112",
                    "profile-update-interval": "12",
                    "profile-title": "base64:U3Vic2NyaXB0aW9u",
                    "content-disposition": f'attachment; filename="{short_id}"',
                    "support-url": "https://t.me/support",
                    "profile-web-page-url": f"{self.base_url}/api/sub/{short_id}",
                    "announce": "base64:SGVsbG8=",
                    "x-hwid-active": "true",
                    "x-hwid-limit": "3",
                    "routing": "happ://routing/onadd/eyJOYW1lIjoicnUifQ",  # Remnawave 2.8, for Happ
                    "subscription-refill-date": "1795335112",
                    "x-shop-brand": "admin-defined, 3.x",  # Remnawave 3.x custom response headers
                    "x-dropped-by-connection": "hop-by-hop",
                    "connection": "x-dropped-by-connection",
                    "set-cookie": "panel_session=secret",
                },
            )

        return app

    def url(self, short_id: str) -> str:
        return f"{self.base_url}/api/sub/{short_id}"


@pytest.fixture(scope="module")
def served_upstream() -> Iterator[Upstream]:
    upstream = Upstream()
    with serve(upstream.app()) as base_url:
        upstream.base_url = base_url
        yield upstream


@pytest.fixture
def upstream(served_upstream: Upstream) -> Upstream:
    served_upstream.hits.clear()
    served_upstream.failing = False
    reset_breakers()  # no test inherits another's failures of this host
    return served_upstream


async def add_mirrored_account(db: AsyncSession, token: str, subscription_url: str | None, telegram_id: int = 1) -> int:
    server = await add_server(db, f"rw{telegram_id}", PanelKind.REMNAWAVE, api_url="https://panel.example")
    _, subscription = await add_subscriber(db, telegram_id)
    encrypted = cipher().encrypt(subscription_url) if subscription_url else None
    account = await add_account(db, server, subscription, sub_token=token, subscription_url_encrypted=encrypted)
    await db.commit()
    return account.id


async def test_relays_the_panel_answer_with_its_subscription_headers(
    client: httpx.AsyncClient, db: AsyncSession, upstream: Upstream
) -> None:
    await add_mirrored_account(db, "tok-relay", upstream.url("aB3dE5fG7hJ9kL2m"))

    response = await client.get("/sub/tok-relay", headers=CLIENT_HEADERS)

    assert response.status_code == 200
    links = base64.b64decode(response.text).decode()
    assert links == "vless://aB3dE5fG7hJ9kL2m@nl.example:443?security=reality#device-1\n"
    headers = response.headers
    assert headers["subscription-userinfo"] == "upload=0; download=1024; total=10737418240; expire=1795335112"
    assert headers["profile-update-interval"] == "12"
    assert headers["profile-title"] == "base64:U3Vic2NyaXB0aW9u"
    assert headers["content-disposition"] == 'attachment; filename="aB3dE5fG7hJ9kL2m"'
    assert headers["support-url"] == "https://t.me/support"
    assert headers["announce"] == "base64:SGVsbG8="
    assert headers["content-type"].startswith("text/plain")
    assert (headers["x-hwid-active"], headers["x-hwid-limit"]) == ("true", "3")
    # The panel's own page is on its (possibly blocked) domain: clients are pointed at us instead.
    assert headers["profile-web-page-url"] == "http://127.0.0.1:8000/sub/tok-relay"
    assert headers["routing"] == "happ://routing/onadd/eyJOYW1lIjoicnUifQ"
    assert headers["subscription-refill-date"] == "1795335112"
    assert headers["x-shop-brand"] == "admin-defined, 3.x"
    assert "set-cookie" not in headers and "x-dropped-by-connection" not in headers
    assert headers["cache-control"] == "no-store"

    [seen] = upstream.hits
    for name, value in CLIENT_HEADERS.items():
        assert seen[name] == value
    # Plain http upstream: the headers Remnawave insists on (reference §2.1).
    assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-for"]


async def test_cache_serves_repeats_but_never_another_devices_answer(
    client: httpx.AsyncClient, db: AsyncSession, upstream: Upstream
) -> None:
    await add_mirrored_account(db, "tok-cache", upstream.url("short1"))

    first = await client.get("/sub/tok-cache", headers=CLIENT_HEADERS)
    again = await client.get("/sub/tok-cache", headers=CLIENT_HEADERS)
    assert len(upstream.hits) == 1
    assert again.content == first.content
    assert again.headers["subscription-userinfo"] == first.headers["subscription-userinfo"]

    other_device = await client.get("/sub/tok-cache", headers={**CLIENT_HEADERS, "x-hwid": "device-2"})
    assert len(upstream.hits) == 2
    assert base64.b64decode(other_device.text).decode().endswith("#device-2\n")
    other_app = await client.get("/sub/tok-cache", headers={**CLIENT_HEADERS, "user-agent": "v2rayNG/1.9"})
    assert len(upstream.hits) == 3
    assert other_app.status_code == 200

    await client.get("/sub/tok-cache", headers=CLIENT_HEADERS)
    assert len(upstream.hits) == 3


async def test_requests_per_token_are_rate_limited(
    client: httpx.AsyncClient, db: AsyncSession, upstream: Upstream
) -> None:
    await add_mirrored_account(db, "tok-flood", upstream.url("short2"))
    await add_mirrored_account(db, "tok-calm", upstream.url("short3"), telegram_id=2)
    for _ in range(RATE_LIMIT):
        assert (await client.get("/sub/tok-flood")).status_code == 200

    refused = await client.get("/sub/tok-flood")

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/plain")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # The limit is per token: another user's link still works.
    assert (await client.get("/sub/tok-calm")).status_code == 200


async def test_a_replaced_token_is_dead_at_once(
    client: httpx.AsyncClient, db: AsyncSession, upstream: Upstream
) -> None:
    account_id = await add_mirrored_account(db, "tok-old", upstream.url("short4"))
    assert (await client.get("/sub/tok-old", headers=CLIENT_HEADERS)).status_code == 200  # now cached

    account = await db.get(VpnAccount, account_id)
    assert account is not None
    account.sub_token = "tok-new"  # what revoke_and_reissue does
    await db.commit()

    old = await client.get("/sub/tok-old", headers=CLIENT_HEADERS)
    assert old.status_code == 404
    assert old.headers["content-type"].startswith("text/plain")
    assert old.text == "Not found"
    new = await client.get("/sub/tok-new", headers=CLIENT_HEADERS)
    assert new.status_code == 200
    assert len(upstream.hits) == 2  # the new token was not served the old token's cached answer


@pytest.mark.parametrize("token", ["never-issued", "x" * 65, "has.dot"])
async def test_unknown_tokens_are_plain_404(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(f"/sub/{token}")
    assert response.status_code == 404
    assert response.text == "Not found"


async def test_unreachable_panel_is_502(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await add_mirrored_account(db, "tok-down", f"http://127.0.0.1:{free_port()}/api/sub/short5")

    response = await client.get("/sub/tok-down")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/plain")
    assert "unreachable" in response.text


async def test_a_failing_panel_is_502_and_not_cached(
    client: httpx.AsyncClient, db: AsyncSession, upstream: Upstream
) -> None:
    await add_mirrored_account(db, "tok-flaky", upstream.url("short6"))
    upstream.failing = True
    assert (await client.get("/sub/tok-flaky")).status_code == 502
    assert len(upstream.hits) == 2  # two attempts

    upstream.failing = False
    recovered = await client.get("/sub/tok-flaky")
    assert recovered.status_code == 200
    assert len(upstream.hits) == 3


async def test_panel_404_is_relayed_and_not_cached(
    client: httpx.AsyncClient, db: AsyncSession, upstream: Upstream
) -> None:
    await add_mirrored_account(db, "tok-gone", upstream.url("unknown"))
    for expected_hits in (1, 2):
        response = await client.get("/sub/tok-gone")
        assert response.status_code == 404
        assert len(upstream.hits) == expected_hits


async def test_account_still_provisioning_is_503(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await add_mirrored_account(db, "tok-pending", None)

    response = await client.get("/sub/tok-pending")

    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("text/plain")


@pytest.fixture
async def redis_app_clients(database_url: str, redis_url: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two app instances sharing Redis, like two workers."""
    settings = make_settings(database_url, redis_url=redis_url)
    apps = [create_app(settings), create_app(settings)]
    clients: list[httpx.AsyncClient] = []
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        for app in apps:
            clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver"))
        yield clients
        for http in clients:
            await http.aclose()


async def test_with_redis_the_cache_and_limit_are_shared_by_workers(
    redis_app_clients: list[httpx.AsyncClient], db: AsyncSession, upstream: Upstream
) -> None:
    first, second = redis_app_clients
    await add_mirrored_account(db, "tok-redis", upstream.url("short7"))

    assert (await first.get("/sub/tok-redis", headers=CLIENT_HEADERS)).status_code == 200
    from_cache = await second.get("/sub/tok-redis", headers=CLIENT_HEADERS)
    assert from_cache.status_code == 200
    assert from_cache.headers["x-hwid-active"] == "true"
    assert base64.b64decode(from_cache.text).decode().endswith("#device-1\n")
    assert len(upstream.hits) == 1

    for _ in range(RATE_LIMIT - 2):
        await first.get("/sub/tok-redis", headers=CLIENT_HEADERS)
    assert (await second.get("/sub/tok-redis", headers=CLIENT_HEADERS)).status_code == 429


async def test_a_redis_outage_does_not_take_the_links_down(
    database_url: str, db: AsyncSession, upstream: Upstream
) -> None:
    # Nothing listens on port 1: the cache and the rate limiter both fail, and the mirror still answers.
    app = create_app(make_settings(database_url, redis_url="redis://127.0.0.1:1/0"))
    await add_mirrored_account(db, "tok-no-redis", upstream.url("short8"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/sub/tok-no-redis", headers=CLIENT_HEADERS)
    assert response.status_code == 200
    assert len(upstream.hits) == 1


@pytest.mark.parametrize(
    ("version", "panel_headers"),
    [
        ("2", {"routing": "happ://routing/onadd/e30", "subscription-refill-date": "1795335112"}),
        ("3", {"x-brand-banner": "Spring sale", "subscription-refill-date": "1795335112"}),
    ],
)
async def test_the_remnawave_panels_own_headers_reach_the_client(
    client: httpx.AsyncClient, db: AsyncSession, version: str, panel_headers: dict[str, str]
) -> None:
    """2.8 sends `routing` (Happ) and `subscription-refill-date`; 3.x admins add response headers of any name."""
    emulator = RemnawaveEmulator(version, response_headers=panel_headers)  # type: ignore[arg-type]
    with serve(emulator) as base_url:
        emulator.self_served(base_url)
        user = emulator._insert_user("tg_1", expire_at=emulator.clock() + timedelta(days=30))
        user.squads = [emulator.default_squad_uuid]
        await add_mirrored_account(db, f"tok-rw{version}", emulator.render_user(user)["subscriptionUrl"])
        reset_breakers()

        response = await client.get(f"/sub/tok-rw{version}", headers=CLIENT_HEADERS)

    assert response.status_code == 200, response.text
    assert {name: response.headers.get(name) for name in panel_headers} == panel_headers
    assert base64.b64decode(response.content).decode().startswith("vless://")
