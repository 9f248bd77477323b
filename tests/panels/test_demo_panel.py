"""The demo panel behaves like a real panel, on SQLite and PostgreSQL: accounts and their statuses, the public
subscription URL, HWID devices, paging and nodes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import create_sessionmaker
from app.kit.clock import FrozenClock
from app.panels.base import (
    AccountChanges,
    AccountExists,
    AccountNotFound,
    AccountRef,
    AccountSpec,
    PanelAccount,
    PanelError,
    VpnPanel,
)
from app.panels.demo import DemoPanel
from app.panels.demo_api import router

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
BASE_URL = "https://shop.example"
GIB = 2**30
APP_UA = "Happ/3.1.0"


@pytest.fixture
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


@pytest.fixture
def sessionmaker(db: AsyncSession, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The panel's own sessions; depending on `db` empties the tables after the test."""
    return create_sessionmaker(engine)


@pytest.fixture
def panel(sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock) -> DemoPanel:
    return DemoPanel(sessionmaker, public_base_url=BASE_URL + "/")


@pytest.fixture
async def http(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[httpx.AsyncClient]:
    """Only the demo panel's router, served in-process the way the shop will mount it."""
    app = FastAPI()
    app.include_router(router)
    app.state.resources = SimpleNamespace(sessionmaker=sessionmaker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client:
        yield client


def spec(username: str = "tg_1001", **overrides: object) -> AccountSpec:
    values: dict[str, object] = {
        "expire_at": NOW + timedelta(days=30),
        "traffic_limit_bytes": 50 * GIB,
        "note": "order 42",
        "telegram_id": 1001,
    }
    values.update(overrides)
    return AccountSpec(username=username, **values)  # type: ignore[arg-type]


async def fetch(http: httpx.AsyncClient, account: PanelAccount, **headers: str) -> httpx.Response:
    return await http.get(account.subscription_url, headers={"user-agent": APP_UA, **headers})


def links_of(response: httpx.Response) -> list[str]:
    return [line for line in base64.b64decode(response.text).decode().split("\n") if line]


def userinfo(response: httpx.Response) -> dict[str, int]:
    pairs = (part.strip().split("=") for part in response.headers["subscription-userinfo"].split(";"))
    return {key: int(value) for key, value in pairs}


def hwid(device: str, **extra: str) -> dict[str, str]:
    return {"x-hwid": device, **extra}


# --- accounts ---------------------------------------------------------------------------------------------------


async def test_account_lifecycle(panel: DemoPanel) -> None:
    as_protocol: VpnPanel = panel  # the demo panel is a full VpnPanel
    created = await as_protocol.create_account(spec(device_limit=3))
    assert created.status == "active"
    assert created.panel_id.isdigit()
    assert created.subscription_url.startswith(f"{BASE_URL}/demo-panel/sub/")
    assert (created.expire_at, created.traffic_limit_bytes, created.device_limit) == (
        NOW + timedelta(days=30),
        50 * GIB,
        3,
    )
    assert (created.used_traffic_bytes, created.lifetime_traffic_bytes, created.created_at) == (0, 0, NOW)
    assert len(created.links) == 3
    assert created.links[0].startswith("vless://")
    assert "@nl-1.demo.vpnshop.local:443?type=tcp&security=reality&" in created.links[0]
    assert await panel.get_account(created.ref) == created

    extended = await panel.modify_account(
        created.ref,
        AccountChanges(expire_at=NOW + timedelta(days=60), traffic_limit_bytes=100 * GIB, device_limit=5),
    )
    assert (extended.expire_at, extended.traffic_limit_bytes, extended.device_limit) == (
        NOW + timedelta(days=60),
        100 * GIB,
        5,
    )
    unlimited = await panel.modify_account(
        created.ref, AccountChanges(clear_expiry=True, traffic_limit_bytes=0, device_limit=0)
    )
    assert (unlimited.expire_at, unlimited.traffic_limit_bytes, unlimited.device_limit) == (None, None, None)

    assert (await panel.modify_account(created.ref, AccountChanges(enabled=False))).status == "disabled"
    assert (await panel.modify_account(created.ref, AccountChanges(enabled=True))).status == "active"

    used = await panel.simulate_usage("tg_1001", upload=3 * GIB, download=7 * GIB, at=NOW - timedelta(minutes=1))
    assert (used.used_traffic_bytes, used.lifetime_traffic_bytes) == (10 * GIB, 10 * GIB)
    assert used.online_at == NOW - timedelta(minutes=1)
    reset = await panel.reset_traffic(created.ref)
    assert (reset.used_traffic_bytes, reset.lifetime_traffic_bytes) == (0, 10 * GIB)

    revoked = await panel.revoke_subscription(created.ref)
    assert revoked.subscription_url != created.subscription_url
    assert revoked.links != created.links
    assert revoked.panel_id == created.panel_id

    await panel.delete_account(created.ref)
    with pytest.raises(AccountNotFound):
        await panel.get_account(created.ref)
    await panel.delete_account(created.ref)  # already gone: not an error
    for call in (
        panel.modify_account(created.ref, AccountChanges(enabled=False)),
        panel.reset_traffic(created.ref),
        panel.revoke_subscription(created.ref),
        panel.list_devices(created.ref),
        panel.delete_device(created.ref, "device-1"),
    ):
        with pytest.raises(AccountNotFound):
            await call


async def test_duplicate_username_is_refused_but_another_demo_server_may_use_it(
    panel: DemoPanel, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await panel.create_account(spec())
    with pytest.raises(AccountExists):
        await panel.create_account(spec())
    assert await panel.get_account(first.ref) == first
    # A second demo server is a separate panel: moving a user there reuses the username.
    other = DemoPanel(sessionmaker, public_base_url=BASE_URL, server_name="demo-de")
    moved = await other.create_account(spec())
    assert moved.panel_id != first.panel_id
    assert "@nl-1.demo-de.vpnshop.local:443" in moved.links[0]


async def test_invalid_input_is_rejected_like_a_panel_validation_error(panel: DemoPanel) -> None:
    for username in ("ab", "has space", "x" * 65):
        with pytest.raises(PanelError):
            await panel.create_account(spec(username))
    with pytest.raises(PanelError):
        await panel.create_account(spec(traffic_limit_bytes=-1))
    with pytest.raises(ValueError, match="naive"):
        await panel.create_account(spec(expire_at=datetime(2027, 1, 1)))
    account = await panel.create_account(spec())
    with pytest.raises(PanelError):
        await panel.modify_account(account.ref, AccountChanges(device_limit=-2))
    assert (await panel.get_account(account.ref)).device_limit is None
    assert (await panel.system()).total_users == 1


# --- statuses ---------------------------------------------------------------------------------------------------


async def test_expiry_makes_an_account_expired_and_an_extension_revives_it(
    panel: DemoPanel, clock: FrozenClock
) -> None:
    account = await panel.create_account(spec(expire_at=NOW + timedelta(days=1)))
    clock.advance(days=2)
    assert (await panel.get_account(account.ref)).status == "expired"
    assert (await panel.system()).active_users == 0
    extended = await panel.modify_account(account.ref, AccountChanges(expire_at=clock.current + timedelta(days=30)))
    assert extended.status == "active"
    # Marzban accepts a past expiry and marks the account expired at once.
    past = await panel.modify_account(account.ref, AccountChanges(expire_at=clock.current - timedelta(hours=1)))
    assert past.status == "expired"
    assert (await panel.modify_account(account.ref, AccountChanges(clear_expiry=True))).status == "active"
    born_expired = await panel.create_account(spec("tg_1002", expire_at=NOW))
    assert born_expired.status == "expired"


async def test_traffic_over_the_limit_makes_an_account_limited(panel: DemoPanel) -> None:
    account = await panel.create_account(spec(traffic_limit_bytes=1000))
    assert (await panel.simulate_usage("tg_1001", 200, 400)).status == "active"
    limited = await panel.simulate_usage("tg_1001", 100, 400)
    assert (limited.status, limited.used_traffic_bytes) == ("limited", 1100)
    # The node no longer lets a limited account through, so no more traffic is counted.
    assert (await panel.simulate_usage("tg_1001", 0, 500)).used_traffic_bytes == 1100

    assert (await panel.modify_account(account.ref, AccountChanges(traffic_limit_bytes=5000))).status == "active"
    assert (await panel.modify_account(account.ref, AccountChanges(traffic_limit_bytes=1000))).status == "limited"
    reset = await panel.reset_traffic(account.ref)
    assert (reset.status, reset.used_traffic_bytes, reset.lifetime_traffic_bytes) == ("active", 0, 1100)


async def test_limited_is_reported_before_expired_like_marzbans_review(panel: DemoPanel, clock: FrozenClock) -> None:
    account = await panel.create_account(spec(traffic_limit_bytes=100, expire_at=NOW + timedelta(hours=1)))
    await panel.simulate_usage("tg_1001", 0, 100)
    clock.advance(hours=2)
    assert (await panel.get_account(account.ref)).status == "limited"


async def test_a_disabled_account_stays_disabled_until_enabled(panel: DemoPanel, clock: FrozenClock) -> None:
    account = await panel.create_account(spec(enabled=False, traffic_limit_bytes=100))
    assert account.status == "disabled"
    changes = AccountChanges(expire_at=NOW + timedelta(days=90), traffic_limit_bytes=10 * GIB)
    assert (await panel.modify_account(account.ref, changes)).status == "disabled"
    assert (await panel.reset_traffic(account.ref)).status == "disabled"
    assert (await panel.simulate_usage("tg_1001", 10, 10)).used_traffic_bytes == 0
    clock.advance(days=100)
    assert (await panel.get_account(account.ref)).status == "disabled"
    # Enabling an account whose time ran out while it was disabled shows it as expired, not active.
    assert (await panel.modify_account(account.ref, AccountChanges(enabled=True))).status == "expired"


# --- the subscription URL ---------------------------------------------------------------------------------------


async def test_subscription_serves_base64_links_and_marzban_usage_headers(
    panel: DemoPanel, http: httpx.AsyncClient
) -> None:
    account = await panel.create_account(spec(traffic_limit_bytes=50 * GIB))
    await panel.simulate_usage("tg_1001", upload=GIB, download=2 * GIB)

    response = await fetch(http, account)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert links_of(response) == account.links
    assert userinfo(response) == {
        "upload": 0,
        "download": 3 * GIB,
        "total": 50 * GIB,
        "expire": int((NOW + timedelta(days=30)).timestamp()),
    }
    assert response.headers["profile-update-interval"] == "12"
    assert response.headers["content-disposition"] == 'attachment; filename="tg_1001"'
    assert response.headers["profile-title"].startswith("base64:")
    seen = await panel.get_account(account.ref)
    assert (seen.sub_updated_at, seen.sub_last_user_agent) == (NOW, APP_UA)

    unlimited = await panel.create_account(spec("tg_1002", expire_at=None, traffic_limit_bytes=None))
    assert userinfo(await fetch(http, unlimited)) == {"upload": 0, "download": 0, "total": 0, "expire": 0}


async def test_revoke_kills_the_old_subscription_url(panel: DemoPanel, http: httpx.AsyncClient) -> None:
    account = await panel.create_account(spec())
    old_links = links_of(await fetch(http, account))
    revoked = await panel.revoke_subscription(account.ref)

    gone = await fetch(http, account)
    assert gone.status_code == 404
    assert gone.json() == {"detail": "Not Found"}
    fresh = await fetch(http, revoked)
    assert fresh.status_code == 200
    assert links_of(fresh) == revoked.links
    old_uuid, new_uuid = (
        old_links[0][len("vless://") :].split("@")[0],
        revoked.links[0][len("vless://") :].split("@")[0],
    )
    assert old_uuid != new_uuid

    assert (await http.get("/demo-panel/sub/nope")).status_code == 404
    await panel.delete_account(account.ref)
    assert (await fetch(http, revoked)).status_code == 404


@pytest.mark.parametrize("state", ["disabled", "expired", "limited"])
async def test_an_inactive_account_gets_200_with_usage_but_no_keys(
    panel: DemoPanel, http: httpx.AsyncClient, clock: FrozenClock, state: str
) -> None:
    account = await panel.create_account(spec(traffic_limit_bytes=1000, expire_at=NOW + timedelta(days=1)))
    if state == "disabled":
        await panel.modify_account(account.ref, AccountChanges(enabled=False))
    elif state == "expired":
        clock.advance(days=2)
    else:
        await panel.simulate_usage("tg_1001", 0, 1000)
    assert (await panel.get_account(account.ref)).status == state

    response = await fetch(http, account)
    assert response.status_code == 200
    assert response.text == ""
    assert links_of(response) == []
    assert userinfo(response)["total"] == 1000


# --- devices ------------------------------------------------------------------------------------------------------


async def test_device_limit_is_enforced_through_x_hwid(panel: DemoPanel, http: httpx.AsyncClient) -> None:
    account = await panel.create_account(spec(device_limit=2))

    anonymous = await fetch(http, account)
    assert (anonymous.status_code, links_of(anonymous)) == (200, [])
    assert anonymous.headers["x-hwid-not-supported"] == "true"

    phone = hwid("phone-0001", **{"x-device-os": "iOS", "x-ver-os": "18.3", "x-device-model": "iPhone 14"})
    first = await fetch(http, account, **phone)
    assert links_of(first) == account.links
    assert first.headers["x-hwid-active"] == "true"
    assert "x-hwid-max-devices-reached" not in first.headers
    assert links_of(await fetch(http, account, **hwid("laptop-0002", **{"x-device-os": "Windows"}))) == account.links

    third = await fetch(http, account, **hwid("tablet-0003"))
    assert (third.status_code, links_of(third)) == (200, [])
    assert third.headers["x-hwid-max-devices-reached"] == "true"
    assert links_of(await fetch(http, account, **phone)) == account.links  # a known device is still served

    devices = await panel.list_devices(account.ref)
    assert [device.hwid for device in devices] == ["phone-0001", "laptop-0002"]
    assert (devices[0].platform, devices[0].os_version, devices[0].model, devices[0].user_agent) == (
        "iOS",
        "18.3",
        "iPhone 14",
        APP_UA,
    )
    assert devices[0].created_at == NOW

    await panel.delete_device(account.ref, "laptop-0002")
    await panel.delete_device(account.ref, "never-seen")  # nothing to delete: not an error
    assert links_of(await fetch(http, account, **hwid("tablet-0003"))) == account.links
    assert [device.hwid for device in await panel.list_devices(account.ref)] == ["phone-0001", "tablet-0003"]


async def test_without_a_device_limit_no_device_is_tracked(panel: DemoPanel, http: httpx.AsyncClient) -> None:
    account = await panel.create_account(spec(device_limit=None))
    response = await fetch(http, account, **hwid("phone-0001"))
    assert links_of(response) == account.links
    assert "x-hwid-active" not in response.headers
    assert await panel.list_devices(account.ref) == []


async def test_concurrent_fetches_cannot_overfill_the_device_limit(panel: DemoPanel, http: httpx.AsyncClient) -> None:
    account = await panel.create_account(spec(device_limit=2))
    responses = await asyncio.gather(*(fetch(http, account, **hwid(f"device-{n:04}")) for n in range(6)))
    assert sorted(bool(links_of(response)) for response in responses) == [False] * 4 + [True] * 2
    assert len(await panel.list_devices(account.ref)) == 2


async def test_concurrent_usage_reports_are_all_counted(panel: DemoPanel) -> None:
    await panel.create_account(spec(traffic_limit_bytes=None))
    await asyncio.gather(*(panel.simulate_usage("tg_1001", 100, 900) for _ in range(10)))
    assert (await panel.get_account(AccountRef("tg_1001"))).used_traffic_bytes == 10_000


# --- paging, nodes, system ----------------------------------------------------------------------------------------


async def test_iter_accounts_pages_by_id_over_600_accounts(
    panel: DemoPanel, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    usernames = [f"tg_{n:05}" for n in range(600)]
    for username in usernames:
        await panel.create_account(spec(username))
    other = DemoPanel(sessionmaker, public_base_url=BASE_URL, server_name="other")
    await other.create_account(spec("tg_other"))

    pages = [page async for page in panel.iter_accounts(page_size=250)]
    assert [len(page) for page in pages] == [250, 250, 100]
    walked = [account for page in pages for account in page]
    assert [account.username for account in walked] == usernames
    ids = [int(account.panel_id) for account in walked]
    assert ids == sorted(ids)

    assert [len(page) async for page in panel.iter_accounts(page_size=600)] == [600]
    with pytest.raises(ValueError):
        await anext(panel.iter_accounts(page_size=0))


async def test_nodes_report_online_state_and_can_be_switched_off(
    panel: DemoPanel, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    nodes = await panel.nodes()
    assert [node.external_id for node in nodes] == ["nl-1", "de-1", "fi-1"]
    assert all(node.is_online and node.is_enabled and node.message == "" for node in nodes)
    assert nodes[0].address == "nl-1.demo.vpnshop.local"
    assert nodes[0].port == 443

    switched = await panel.set_node_online("de-1", False)
    assert not switched.is_online
    assert switched.message
    assert [node.is_online for node in await panel.nodes()] == [True, False, True]
    other = DemoPanel(sessionmaker, public_base_url=BASE_URL, server_name="other")
    assert all(node.is_online for node in await other.nodes())

    assert (await panel.set_node_online("de-1", True)).is_online
    assert all(node.is_online for node in await panel.nodes())
    with pytest.raises(PanelError):
        await panel.set_node_online("mars-1", False)


async def test_system_counts_users_active_users_and_online_users(panel: DemoPanel, clock: FrozenClock) -> None:
    await panel.create_account(spec("tg_1"))
    await panel.create_account(spec("tg_2", enabled=False))
    await panel.create_account(spec("tg_3", expire_at=NOW + timedelta(hours=1)))
    await panel.create_account(spec("tg_4", traffic_limit_bytes=100))
    await panel.simulate_usage("tg_4", 0, 100)
    await panel.simulate_usage("tg_1", 10, 10)

    system = await panel.system()
    assert (system.total_users, system.active_users, system.online_users) == (4, 2, 2)
    assert system.version
    clock.advance(hours=2)
    system = await panel.system()
    assert (system.total_users, system.active_users, system.online_users) == (4, 1, 0)
