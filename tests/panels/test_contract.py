"""One behavioural contract, run through the VpnPanel interface against every implementation: Marzban 0.7 and
0.8, Remnawave 2.x and 3.x (each over real HTTP to its emulator) and the demo panel (on SQLite and PostgreSQL,
since it keeps its accounts in our database).

Only what the protocol promises is asserted here; each adapter's own wire details are tested next to it. The
few things a test needs from outside the interface (traffic flowing, a device showing up, whether a
subscription link still works, the panel's clock moving on) come from a small per-implementation `Case`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import create_sessionmaker
from app.panels.base import (
    AccountChanges,
    AccountExists,
    AccountNotFound,
    AccountRef,
    AccountSpec,
    NodeInfo,
    PanelAccount,
    VpnPanel,
)
from app.panels.demo import DemoPanel, SubscriptionClient, fetch_subscription
from tests.emulators.remnawave import EmuDevice
from tests.panels.marzban_fixture import loopback_transport, open_marzban
from tests.panels.remnawave_fixture import open_remnawave

GIB = 2**30
HTTP_KINDS = ["marzban-0.7", "marzban-0.8", "remnawave-2", "remnawave-3"]
# The HTTP panels need no database, so they run once (on the session's SQLite URL, which costs nothing);
# the demo panel is database-backed and runs on both databases.
COMBINATIONS = [(kind, "sqlite") for kind in HTTP_KINDS] + [("demo", "sqlite"), ("demo", "postgresql")]
REMNAWAVE_PROXY_HEADERS = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}

_names = itertools.count(1)


pytestmark = pytest.mark.parametrize(
    ("kind", "database_url"),
    COMBINATIONS,
    indirect=["database_url"],
    scope="module",  # run each implementation's tests together, so the database changes only once
    ids=[kind if kind != "demo" else f"demo-{db}" for kind, db in COMBINATIONS],
)


@dataclass
class Case:
    """A panel plus the outside world the contract needs to poke at."""

    panel: VpnPanel
    record_usage: Callable[[str, int], Awaitable[None]]  # traffic flowing through a node
    add_device: Callable[[str, str], Awaitable[None]]  # a client app registering its HWID
    link_alive: Callable[[str], Awaitable[bool]]  # does this subscription URL still serve the account?
    tick: Callable[[], None]  # let the panel's clock move past the current second


@pytest.fixture
def demo_sessionmaker(kind: str, database_url: str, request: pytest.FixtureRequest) -> async_sessionmaker | None:
    """The demo panel's database (emptied afterwards through `db`); the HTTP panels need none."""
    if kind != "demo":
        return None
    engine = request.getfixturevalue("engine")
    request.getfixturevalue("db")
    return create_sessionmaker(engine)


@pytest.fixture
async def case(kind: str, demo_sessionmaker: async_sessionmaker[AsyncSession] | None) -> AsyncIterator[Case]:
    if kind.startswith("marzban"):
        async with open_marzban(kind.removeprefix("marzban-")) as (panel, state, _):
            state.add_node("node-1", address="10.0.0.2")

            async def marzban_usage(username: str, used: int) -> None:
                state.record_usage(username, used)

            async def marzban_alive(url: str) -> bool:
                async with httpx.AsyncClient(transport=loopback_transport()) as client:
                    return (await client.get(url)).status_code == 200

            async def no_devices(username: str, hwid: str) -> None:
                raise AssertionError("Marzban has no device tracking")

            # A subscription token minted in the revoke's own second stays valid (Marzban quirk, §1.3).
            yield Case(panel, marzban_usage, no_devices, marzban_alive, lambda: state.advance(2))
        return
    if kind.startswith("remnawave"):
        async with open_remnawave(kind.removeprefix("remnawave-")) as (panel, emulator, base_url):

            async def remnawave_usage(username: str, used: int) -> None:
                emulator.add_traffic(username, used)

            async def remnawave_device(username: str, hwid: str) -> None:
                emulator.user(username).devices[hwid] = EmuDevice(hwid, platform="iOS", user_agent="Happ/3.1.0")

            async def remnawave_alive(url: str) -> bool:
                short_uuid = url.rsplit("/", 1)[1]
                async with httpx.AsyncClient() as client:
                    response = await client.get(f"{base_url}/api/sub/{short_uuid}", headers=REMNAWAVE_PROXY_HEADERS)
                return response.status_code == 200

            yield Case(panel, remnawave_usage, remnawave_device, remnawave_alive, lambda: None)
        return
    assert demo_sessionmaker is not None
    demo = DemoPanel(demo_sessionmaker, public_base_url="https://shop.example", server_name="contract")

    async def demo_usage(username: str, used: int) -> None:
        await demo.simulate_usage(username, 0, used)

    async def demo_device(username: str, hwid: str) -> None:
        account = await demo.get_account(AccountRef(username))
        short_id = account.subscription_url.rsplit("/", 1)[1]
        client = SubscriptionClient(user_agent="Happ/3.1.0", hwid=hwid, platform="iOS")
        reply = await fetch_subscription(demo_sessionmaker, short_id, client)
        assert reply is not None and reply.links, "the demo panel refused the device"

    async def demo_alive(url: str) -> bool:
        reply = await fetch_subscription(demo_sessionmaker, url.rsplit("/", 1)[1], SubscriptionClient())
        return reply is not None

    yield Case(demo, demo_usage, demo_device, demo_alive, lambda: None)
    await demo.aclose()


# One instant per run: two calls to spec() must build the same expiry even across a second boundary.
ANCHOR = datetime.now(UTC).replace(microsecond=0)


def in_days(days: float) -> datetime:
    """Whole seconds: the precision every panel keeps (Marzban stores unix seconds)."""
    return ANCHOR + timedelta(days=days)


def spec(**overrides: object) -> AccountSpec:
    values: dict[str, object] = {
        "username": f"ct_{next(_names):05d}",
        "expire_at": in_days(30),
        "traffic_limit_bytes": 50 * GIB,
        "device_limit": 3,
        "note": "contract test",
        "telegram_id": 1001,
    }
    values.update(overrides)
    return AccountSpec(**values)  # type: ignore[arg-type]


async def create(case: Case, **overrides: object) -> PanelAccount:
    return await case.panel.create_account(spec(**overrides))


# --- accounts ----------------------------------------------------------------------------------------------------


async def test_create_then_get_returns_the_same_account(case: Case) -> None:
    wanted = spec()

    created = await case.panel.create_account(wanted)
    fetched = await case.panel.get_account(AccountRef(wanted.username))

    for account in (created, fetched):
        assert account.username == wanted.username
        assert account.panel_id
        assert account.status == "active"
        assert account.expire_at == wanted.expire_at  # to the second, timezone-aware
        assert account.traffic_limit_bytes == 50 * GIB
        assert account.device_limit == (3 if case.panel.supports_devices else None)
        assert (account.used_traffic_bytes, account.lifetime_traffic_bytes) == (0, 0)
        assert account.subscription_url.startswith(("http://", "https://"))
    assert fetched.panel_id == created.panel_id
    # The panel's own id works as well as the username.
    assert (await case.panel.get_account(created.ref)).username == wanted.username


async def test_unlimited_and_never_expiring_account(case: Case) -> None:
    created = await create(case, expire_at=None, traffic_limit_bytes=None, device_limit=None)

    fetched = await case.panel.get_account(created.ref)

    assert (fetched.expire_at, fetched.traffic_limit_bytes, fetched.device_limit) == (None, None, None)
    assert fetched.status == "active"


async def test_account_created_disabled(case: Case) -> None:
    created = await create(case, enabled=False)

    assert created.status == "disabled"
    assert (await case.panel.get_account(created.ref)).status == "disabled"


async def test_duplicate_create_raises_account_exists_and_keeps_the_original(case: Case) -> None:
    original = await create(case)

    with pytest.raises(AccountExists):
        await case.panel.create_account(spec(username=original.username, expire_at=in_days(90)))

    kept = await case.panel.get_account(original.ref)
    assert (kept.panel_id, kept.expire_at) == (original.panel_id, original.expire_at)


async def test_unknown_account_is_not_found(case: Case) -> None:
    with pytest.raises(AccountNotFound):
        await case.panel.get_account(AccountRef("ct_nobody"))
    with pytest.raises(AccountNotFound):
        await case.panel.modify_account(AccountRef("ct_nobody"), AccountChanges(expire_at=in_days(10)))
    with pytest.raises(AccountNotFound):
        await case.panel.reset_traffic(AccountRef("ct_nobody"))
    with pytest.raises(AccountNotFound):
        await case.panel.revoke_subscription(AccountRef("ct_nobody"))


async def test_modify_changes_expiry_and_limits(case: Case) -> None:
    created = await create(case)
    later = in_days(60)

    changed = await case.panel.modify_account(
        created.ref, AccountChanges(expire_at=later, traffic_limit_bytes=100 * GIB, device_limit=5)
    )
    fetched = await case.panel.get_account(created.ref)

    for account in (changed, fetched):
        assert account.expire_at == later
        assert account.traffic_limit_bytes == 100 * GIB
        assert account.device_limit == (5 if case.panel.supports_devices else None)
        assert account.status == "active"


async def test_modify_to_unlimited_and_never(case: Case) -> None:
    created = await create(case)

    await case.panel.modify_account(
        created.ref, AccountChanges(clear_expiry=True, traffic_limit_bytes=0, device_limit=0)
    )

    fetched = await case.panel.get_account(created.ref)
    assert (fetched.expire_at, fetched.traffic_limit_bytes, fetched.device_limit) == (None, None, None)


async def test_empty_change_leaves_the_account_alone(case: Case) -> None:
    created = await create(case)

    same = await case.panel.modify_account(created.ref, AccountChanges())

    assert (same.expire_at, same.traffic_limit_bytes, same.status) == (
        created.expire_at,
        created.traffic_limit_bytes,
        "active",
    )


async def test_disable_then_enable_keeps_expiry_and_limits(case: Case) -> None:
    created = await create(case)

    disabled = await case.panel.modify_account(created.ref, AccountChanges(enabled=False))
    assert disabled.status == "disabled"
    assert (await case.panel.get_account(created.ref)).status == "disabled"

    enabled = await case.panel.modify_account(created.ref, AccountChanges(enabled=True))
    assert enabled.status == "active"
    fetched = await case.panel.get_account(created.ref)
    assert (fetched.status, fetched.expire_at, fetched.traffic_limit_bytes) == (
        "active",
        created.expire_at,
        created.traffic_limit_bytes,
    )
    assert fetched.panel_id == created.panel_id


async def test_revoke_gives_a_new_subscription_url_and_kills_the_old_one(case: Case) -> None:
    created = await create(case)
    assert await case.link_alive(created.subscription_url)
    case.tick()

    revoked = await case.panel.revoke_subscription(created.ref)

    assert revoked.subscription_url != created.subscription_url
    assert (revoked.username, revoked.panel_id, revoked.status) == (created.username, created.panel_id, "active")
    assert not await case.link_alive(created.subscription_url)
    assert await case.link_alive(revoked.subscription_url)


async def test_reset_traffic_zeroes_usage_but_not_the_lifetime_total(case: Case) -> None:
    created = await create(case)
    await case.record_usage(created.username, 5 * GIB)
    used = await case.panel.get_account(created.ref)
    assert (used.used_traffic_bytes, used.lifetime_traffic_bytes) == (5 * GIB, 5 * GIB)

    reset = await case.panel.reset_traffic(created.ref)

    assert reset.used_traffic_bytes == 0
    fetched = await case.panel.get_account(created.ref)
    assert (fetched.used_traffic_bytes, fetched.lifetime_traffic_bytes) == (0, 5 * GIB)
    assert fetched.status == "active"


async def test_reset_traffic_keeps_a_disabled_account_disabled(case: Case) -> None:
    created = await create(case)
    await case.record_usage(created.username, GIB)
    await case.panel.modify_account(created.ref, AccountChanges(enabled=False))

    reset = await case.panel.reset_traffic(created.ref)

    assert reset.status == "disabled"
    assert (await case.panel.get_account(created.ref)).status == "disabled"


async def test_delete_is_idempotent(case: Case) -> None:
    created = await create(case)
    kept = await create(case)

    await case.panel.delete_account(created.ref)

    with pytest.raises(AccountNotFound):
        await case.panel.get_account(AccountRef(created.username))
    await case.panel.delete_account(created.ref)  # already gone: not an error
    await case.panel.delete_account(AccountRef(created.username))
    assert (await case.panel.get_account(kept.ref)).status == "active"


async def test_a_deleted_username_can_be_created_again(case: Case) -> None:
    """What reconciliation does when an account vanished from the panel."""
    first = await create(case)
    await case.panel.delete_account(first.ref)

    later = in_days(45)

    again = await case.panel.create_account(spec(username=first.username, expire_at=later))

    assert (again.status, again.expire_at) == ("active", later)
    assert (await case.panel.get_account(AccountRef(first.username))).panel_id == again.panel_id


async def test_iter_accounts_pages_through_every_account_exactly_once(case: Case) -> None:
    made = {(await create(case)).username for _ in range(7)}

    pages = [page async for page in case.panel.iter_accounts(page_size=3)]

    assert [len(page) for page in pages] == [3, 3, 1]
    listed = [account.username for page in pages for account in page]
    assert sorted(listed) == sorted(made)  # each once: no account lost, none repeated
    assert all(account.status == "active" and account.panel_id for page in pages for account in page)


async def test_iter_accounts_on_an_empty_panel_yields_nothing(case: Case) -> None:
    assert [page async for page in case.panel.iter_accounts(page_size=10)] == []


# --- server ------------------------------------------------------------------------------------------------------


async def test_nodes_are_sane(case: Case) -> None:
    nodes = await case.panel.nodes()

    assert nodes, "every test panel has at least one node"
    assert all(isinstance(node, NodeInfo) for node in nodes)
    assert len({node.external_id for node in nodes}) == len(nodes)
    for node in nodes:
        assert node.external_id and node.name and node.address
        assert node.port is None or 0 < node.port < 65536
        assert isinstance(node.is_online, bool) and isinstance(node.is_enabled, bool)
        assert node.users_online is None or node.users_online >= 0


async def test_system_counts_the_accounts(case: Case) -> None:
    first = await create(case)
    await create(case)
    await create(case)
    await case.panel.modify_account(first.ref, AccountChanges(enabled=False))

    system = await case.panel.system()

    assert isinstance(system.version, str) and system.version
    assert (system.total_users, system.active_users) == (3, 2)
    assert system.online_users is None or 0 <= system.online_users <= 3


# --- devices -----------------------------------------------------------------------------------------------------


async def test_devices_are_listed_and_removed_where_supported(case: Case) -> None:
    created = await create(case, device_limit=3)
    if not case.panel.supports_devices:
        assert await case.panel.list_devices(created.ref) == []
        return
    assert await case.panel.list_devices(created.ref) == []
    await case.add_device(created.username, "hwid-phone")
    await case.add_device(created.username, "hwid-laptop")

    devices = await case.panel.list_devices(created.ref)

    assert sorted(device.hwid for device in devices) == ["hwid-laptop", "hwid-phone"]
    assert {device.platform for device in devices} == {"iOS"}
    await case.panel.delete_device(created.ref, "hwid-phone")
    assert [device.hwid for device in await case.panel.list_devices(created.ref)] == ["hwid-laptop"]
    with pytest.raises(AccountNotFound):
        await case.panel.list_devices(AccountRef("ct_nobody"))
