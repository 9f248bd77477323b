"""RemnawavePanel against the Remnawave emulator, for API generations 2.x (uuid paths) and 3.x (numeric ids)."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.kit.http import CircuitBreaker, HttpClient, RetryPolicy
from app.panels.base import (
    AccountChanges,
    AccountExists,
    AccountNotFound,
    AccountRef,
    AccountSpec,
    PanelAccount,
    PanelAuthError,
    PanelError,
    PanelUnavailable,
)
from app.panels.remnawave import RemnawavePanel
from tests.emulators.remnawave import RemnawaveEmulator
from tests.panels.remnawave_fixture import connect_panel, open_remnawave

VERSIONS = ["2", "3"]
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PROXY = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}

Env = tuple[RemnawavePanel, RemnawaveEmulator, str]


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with open_remnawave(request.param) as opened:
        yield opened


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
async def hwid_env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with open_remnawave(request.param, hwid_enabled=True, hwid_fallback_limit=2) as opened:
        yield opened


# One instant per run: two calls to spec() must build the same expiry even across a second boundary.
ANCHOR = datetime.now(UTC).replace(microsecond=0)


def in_days(days: float) -> datetime:
    return ANCHOR + timedelta(days=days)


def spec(username: str = "tg_1001", **overrides: object) -> AccountSpec:
    values: dict[str, object] = {
        "expire_at": in_days(30),
        "traffic_limit_bytes": 50 * 2**30,
        "device_limit": 3,
        "note": "order 42",
        "telegram_id": 1001,
    }
    values.update(overrides)
    return AccountSpec(username=username, **values)  # type: ignore[arg-type]


def key_route(emulator: RemnawaveEmulator, suffix: str = "") -> str:
    return "/api/users/{" + emulator.key_name + "}" + suffix


async def fetch_subscription(base_url: str, account: PanelAccount, **headers: str) -> httpx.Response:
    """What a VPN client does: GET the public subscription URL (through the proxy, so with the headers)."""
    short_uuid = account.subscription_url.rsplit("/", 1)[1]
    async with httpx.AsyncClient() as client:
        return await client.get(f"{base_url}/api/sub/{short_uuid}", headers={**PROXY, **headers})


# ----- CRUD -----------------------------------------------------------------------------------------------------


async def test_create_then_get_round_trips_every_field(env: Env) -> None:
    panel, emulator, _ = env
    created = await panel.create_account(spec())

    stored = emulator.user("tg_1001")
    expected_id = stored.uuid if emulator.version == "2" else str(stored.id)
    assert created.panel_id == expected_id
    assert created.status == "active"
    assert created.expire_at == spec().expire_at
    assert created.traffic_limit_bytes == 50 * 2**30
    assert created.device_limit == 3
    assert created.subscription_url == f"https://panel.example.com/api/sub/{stored.short_uuid}"
    assert (stored.description, stored.telegram_id, stored.hwid_device_limit) == ("order 42", 1001, 3)

    by_id = await panel.get_account(created.ref)
    by_name = await panel.get_account(AccountRef("tg_1001"))
    assert by_id.panel_id == by_name.panel_id == created.panel_id
    assert by_id.expire_at == created.expire_at
    assert by_id.created_at is not None


async def test_never_expiry_and_unlimited_limits_use_the_panel_conventions(env: Env) -> None:
    panel, emulator, _ = env
    account = await panel.create_account(
        AccountSpec("tg_unlimited", expire_at=None, traffic_limit_bytes=None, device_limit=None)
    )
    stored = emulator.user("tg_unlimited")
    assert stored.expire_at.year == 2099
    assert (stored.traffic_limit_bytes, stored.hwid_device_limit) == (0, 0)  # 0 = unlimited / HWID bypass
    assert (account.expire_at, account.traffic_limit_bytes, account.device_limit) == (None, None, None)


async def test_creating_a_taken_username_raises_account_exists(env: Env) -> None:
    panel, emulator, _ = env
    await panel.create_account(spec())
    with pytest.raises(AccountExists, match="A019"):
        await panel.create_account(spec())
    assert len(emulator.users) == 1


async def test_disabled_spec_creates_a_disabled_account(env: Env) -> None:
    panel, _, _ = env
    account = await panel.create_account(spec(enabled=False))
    assert account.status == "disabled"


async def test_modify_changes_expiry_limits_and_enabled_state(env: Env) -> None:
    panel, emulator, _ = env
    created = await panel.create_account(spec())
    new_expiry = in_days(90)

    changed = await panel.modify_account(
        created.ref,
        AccountChanges(expire_at=new_expiry, traffic_limit_bytes=0, device_limit=5, enabled=False),
    )
    assert changed.status == "disabled"
    assert changed.expire_at == new_expiry
    assert changed.traffic_limit_bytes is None
    assert changed.device_limit == 5
    assert emulator.user("tg_1001").disabled

    # A ref without panel_id goes by username.
    enabled = await panel.modify_account(AccountRef("tg_1001"), AccountChanges(enabled=True, clear_expiry=True))
    assert enabled.status == "active"
    assert enabled.expire_at is None
    assert emulator.user("tg_1001").expire_at.year == 2099


async def test_modify_with_a_past_expiry_is_a_panel_error_with_the_panels_message(env: Env) -> None:
    panel, _, _ = env
    created = await panel.create_account(spec())
    with pytest.raises(PanelError, match="Expiration date cannot be in the past"):
        await panel.modify_account(created.ref, AccountChanges(expire_at=in_days(-1)))


async def test_unknown_accounts_raise_account_not_found(env: Env) -> None:
    panel, emulator, _ = env
    ghost_id = str(uuid.uuid4()) if emulator.version == "2" else "987654"
    for ref in (AccountRef("nobody"), AccountRef("nobody", ghost_id)):
        with pytest.raises(AccountNotFound):
            await panel.get_account(ref)
        with pytest.raises(AccountNotFound):
            await panel.modify_account(ref, AccountChanges(enabled=False))
        with pytest.raises(AccountNotFound):
            await panel.reset_traffic(ref)
        with pytest.raises(AccountNotFound):
            await panel.list_devices(ref)


async def test_delete_is_idempotent(env: Env) -> None:
    panel, emulator, _ = env
    created = await panel.create_account(spec())
    await panel.delete_account(created.ref)
    assert "tg_1001" not in emulator.by_username
    with pytest.raises(AccountNotFound):
        await panel.get_account(created.ref)

    await panel.delete_account(created.ref)  # by key: 404 swallowed
    await panel.delete_account(AccountRef("tg_1001"))  # by username: lookup 404 swallowed
    assert emulator.count("DELETE", key_route(emulator)) == 2


async def test_reset_traffic_zeroes_usage_and_lifts_the_limit(env: Env) -> None:
    panel, emulator, _ = env
    created = await panel.create_account(spec(traffic_limit_bytes=1000))
    emulator.add_traffic("tg_1001", 1500)
    emulator.review()  # the panel's 30-s status job
    limited = await panel.get_account(created.ref)
    assert (limited.status, limited.used_traffic_bytes, limited.lifetime_traffic_bytes) == ("limited", 1500, 1500)
    assert limited.online_at is not None

    reset = await panel.reset_traffic(created.ref)
    assert (reset.status, reset.used_traffic_bytes, reset.lifetime_traffic_bytes) == ("active", 0, 1500)


async def test_revoke_kills_the_old_subscription_link(env: Env) -> None:
    panel, _, base_url = env
    created = await panel.create_account(spec())
    assert (await fetch_subscription(base_url, created)).status_code == 200

    revoked = await panel.revoke_subscription(AccountRef("tg_1001"))
    assert revoked.subscription_url != created.subscription_url
    assert revoked.panel_id == created.panel_id
    assert (await fetch_subscription(base_url, created)).status_code == 404
    fresh = await fetch_subscription(base_url, revoked)
    assert fresh.status_code == 200
    assert base64.b64decode(fresh.content).startswith(b"vless://")


async def test_iter_accounts_pages_through_every_account(env: Env) -> None:
    panel, emulator, _ = env
    emulator.seed_users(1200)

    pages = [page async for page in panel.iter_accounts(page_size=500)]
    assert [len(page) for page in pages] == [500, 500, 200]
    names = {account.username for page in pages for account in page}
    assert names == {f"seed_{i}" for i in range(1200)}
    assert emulator.count("GET", "/api/users") == 3

    # The panel caps a page at 1000 rows; a larger request must still cover everything.
    pages = [page async for page in panel.iter_accounts(page_size=5000)]
    assert [len(page) for page in pages] == [1000, 200]


async def test_iter_accounts_on_an_empty_panel_yields_nothing(env: Env) -> None:
    panel, _, _ = env
    assert [page async for page in panel.iter_accounts()] == []


# ----- squads -----------------------------------------------------------------------------------------------------


async def test_new_accounts_never_get_every_squad_when_none_is_chosen(env: Env) -> None:
    """Premium, test and admin squads live beside the customers' one: with several and none chosen, the create
    fails with an error that says what to configure, and nothing is created."""
    panel, emulator, _ = env
    emulator.add_squad("Premium")
    with pytest.raises(PanelError, match=r"2 internal squads \(Default-Squad, Premium\) and none is chosen"):
        await panel.create_account(spec("tg_a"))
    assert emulator.users == {}


async def test_the_panels_only_squad_is_used_when_none_is_chosen(env: Env) -> None:
    panel, emulator, _ = env
    await panel.create_account(spec("tg_a"))
    await panel.create_account(spec("tg_b"))
    assert emulator.user("tg_a").squads == [emulator.default_squad_uuid]
    assert emulator.user("tg_b").squads == [emulator.default_squad_uuid]
    assert emulator.count("GET", "/api/internal-squads") == 1  # cached


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_plans_squads_by_name_win_over_the_servers(version: str) -> None:
    async with open_remnawave(version) as (_, emulator, base_url):
        premium = emulator.add_squad("Premium")
        async with connect_panel(base_url, emulator.token, squad_uuids=[emulator.default_squad_uuid]) as panel:
            await panel.create_account(spec("tg_plan", squads=["Premium"]))
            await panel.create_account(spec("tg_default"))
            with pytest.raises(PanelError, match="no internal squad Gold"):
                await panel.create_account(spec("tg_typo", squads=["Gold"]))
        assert emulator.user("tg_plan").squads == [premium]
        assert emulator.user("tg_default").squads == [emulator.default_squad_uuid]
        assert "tg_typo" not in emulator.by_username


@pytest.mark.parametrize("version", VERSIONS)
async def test_configured_squads_are_used_as_given(version: str) -> None:
    async with open_remnawave(version) as (_, emulator, base_url):
        emulator_squad = emulator.add_squad("Paid")
        async with connect_panel(base_url, emulator.token, squad_uuids=[emulator_squad]) as panel:
            await panel.create_account(spec())
        assert emulator.user("tg_1001").squads == [emulator_squad]
        assert emulator.count("GET", "/api/internal-squads") == 0


# ----- devices ----------------------------------------------------------------------------------------------------


async def test_devices_are_listed_and_deleted(hwid_env: Env) -> None:
    panel, _, base_url = hwid_env
    created = await panel.create_account(spec(device_limit=2))
    assert (await fetch_subscription(base_url, created)).status_code == 404  # limit on: x-hwid required
    phone = {"x-hwid": "phone-0000001", "x-device-os": "iOS", "x-ver-os": "18.3", "x-device-model": "iPhone 14"}
    assert (await fetch_subscription(base_url, created, **phone, **{"user-agent": "Happ/3.0"})).status_code == 200
    assert (await fetch_subscription(base_url, created, **{"x-hwid": "laptop-0000002"})).status_code == 200
    third = await fetch_subscription(base_url, created, **{"x-hwid": "tablet-0000003"})
    assert third.headers["x-hwid-max-devices-reached"] == "true"
    assert base64.b64decode(third.content) == b""

    devices = await panel.list_devices(AccountRef("tg_1001"))
    assert sorted(d.hwid for d in devices) == ["laptop-0000002", "phone-0000001"]
    iphone = next(d for d in devices if d.hwid == "phone-0000001")
    assert (iphone.platform, iphone.os_version, iphone.model, iphone.user_agent) == (
        "iOS",
        "18.3",
        "iPhone 14",
        "Happ/3.0",
    )
    assert iphone.created_at is not None

    await panel.delete_device(created.ref, "phone-0000001")
    await panel.delete_device(created.ref, "phone-0000001")  # already gone: no error
    assert [d.hwid for d in await panel.list_devices(created.ref)] == ["laptop-0000002"]


async def test_subscription_history_fills_last_fetch(env: Env) -> None:
    panel, _, base_url = env
    created = await panel.create_account(spec())
    assert (await panel.get_account(created.ref)).sub_updated_at is None

    await fetch_subscription(base_url, created, **{"user-agent": "Happ/3.0"})
    await fetch_subscription(base_url, created, **{"user-agent": "v2rayNG/1.9"})
    account = await panel.get_account(created.ref)
    assert account.sub_last_user_agent == "v2rayNG/1.9"
    assert account.sub_updated_at is not None
    assert abs(account.sub_updated_at - datetime.now(UTC)) < timedelta(minutes=1)


# ----- nodes and system -------------------------------------------------------------------------------------------


async def test_nodes_and_system(env: Env) -> None:
    panel, emulator, _ = env
    emulator.add_node("Node-2", "node2.example.com", port=3333, connected=False)
    await panel.create_account(spec("tg_a"))
    await panel.create_account(spec("tg_b", enabled=False))

    nodes = await panel.nodes()
    assert [(n.name, n.address, n.port, n.is_online, n.is_enabled) for n in nodes] == [
        ("Node-1", "node1.example.com", 2222, True, True),
        ("Node-2", "node2.example.com", 3333, False, True),
    ]
    assert nodes[1].message == "connection refused"

    info = await panel.system()
    assert (info.total_users, info.active_users, info.online_users) == (2, 1, 0)
    assert info.version == emulator.panel_version


# ----- API generation ---------------------------------------------------------------------------------------------


async def test_auto_detection_uses_the_right_key_paths(env: Env) -> None:
    panel, emulator, _ = env
    assert await panel.generation() == emulator.version
    created = await panel.create_account(spec())
    await panel.get_account(created.ref)
    await panel.reset_traffic(created.ref)
    await panel.list_devices(created.ref)
    assert emulator.count("GET", key_route(emulator)) == 1
    assert emulator.count("POST", key_route(emulator, "/actions/reset-traffic")) == 1
    other = "id" if emulator.version == "2" else "uuid"
    assert emulator.count("GET", "/api/users/{" + other + "}") == 0
    assert sum(emulator.served.values()) == sum(emulator.requests.values())  # nothing was rejected
    if emulator.version == "2":
        assert UUID_RE.match(created.panel_id)
    else:
        assert created.panel_id.isdigit()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("users", [0, 3], ids=["empty", "populated"])
async def test_detection_without_metadata_falls_back_to_the_api_shape(version: str, users: int) -> None:
    async with open_remnawave(version) as (panel, emulator, _):
        emulator.seed_users(users)
        emulator.faults.fail_next(1, 403, path="/api/system/metadata")  # e.g. a token without the scope
        assert await panel.generation() == version
        created = await panel.create_account(spec())
        assert (await panel.get_account(created.ref)).username == "tg_1001"


@pytest.mark.parametrize("version", VERSIONS)
async def test_configured_generation_skips_detection(version: str) -> None:
    async with open_remnawave(version, api_version=version) as (panel, emulator, _):  # type: ignore[arg-type]
        await panel.create_account(spec())
        assert emulator.count("GET", "/api/system/metadata") == 0


async def test_a_panel_id_of_the_other_generation_is_resolved_by_username(env: Env) -> None:
    """Refs stored before a 2.x → 3.x upgrade carry uuids; they must still find the account."""
    panel, _, _ = env
    created = await panel.create_account(spec())
    stale = "42" if UUID_RE.match(created.panel_id) else str(uuid.uuid4())
    account = await panel.get_account(AccountRef("tg_1001", stale))
    assert account.panel_id == created.panel_id
    await panel.delete_account(AccountRef("tg_1001", stale))
    with pytest.raises(AccountNotFound):
        await panel.get_account(created.ref)


# ----- transport, auth and faults ---------------------------------------------------------------------------------


async def test_forwarded_headers_are_always_sent(env: Env) -> None:
    panel, emulator, base_url = env
    auth = {"Authorization": f"Bearer {emulator.token}"}
    async with httpx.AsyncClient(base_url=base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # the panel destroys the socket without them
            await client.get("/api/users", headers=auth)
        with pytest.raises(httpx.RemoteProtocolError):  # both are needed
            await client.get("/api/users", headers={**auth, "X-Forwarded-For": "1.2.3.4"})
    assert emulator.proxy_rejections == 2

    created = await panel.create_account(spec())
    await panel.get_account(created.ref)
    await panel.nodes()
    assert emulator.proxy_rejections == 2


async def test_https_urls_do_not_get_the_bypass_headers() -> None:
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={"response": []})

    http = HttpClient("https://panel.example.com", service="remnawave", transport=httpx.MockTransport(handler))
    panel = RemnawavePanel("https://panel.example.com", "tok", api_version="2", http=http)
    await panel.nodes()
    await http.aclose()
    assert seen[0]["authorization"] == "Bearer tok"
    assert "x-forwarded-proto" not in seen[0]


async def test_a_wrong_token_raises_panel_auth_error(env: Env) -> None:
    _, emulator, base_url = env
    for api_version in ("auto", emulator.version):
        async with connect_panel(base_url, "not-the-token", api_version=api_version) as intruder:  # type: ignore[arg-type]
            with pytest.raises(PanelAuthError, match="Unauthorized"):
                await intruder.create_account(spec())
    assert emulator.users == {}


async def test_a_500_is_retried_to_success(env: Env) -> None:
    panel, emulator, _ = env
    created = await panel.create_account(spec())
    emulator.faults.fail_next(1, 500)
    account = await panel.get_account(created.ref)
    assert account.username == "tg_1001"
    assert emulator.count("GET", key_route(emulator)) == 2


async def test_throttling_and_slowness_are_retried(env: Env) -> None:
    panel, emulator, base_url = env
    emulator.faults.throttle_next(1, retry_after=0, path="/api/users")
    await panel.create_account(spec())
    assert emulator.count("POST", "/api/users") == 2

    async with connect_panel(base_url, emulator.token, http_timeout=0.2) as impatient:
        emulator.faults.delay_next(1, seconds=0.5, path="/api/users/by-username")
        assert (await impatient.get_account(AccountRef("tg_1001"))).username == "tg_1001"
    assert emulator.count("GET", "/api/users/by-username/{username}") == 2


async def test_persistent_503_raises_panel_unavailable(env: Env) -> None:
    panel, emulator, _ = env
    emulator.faults.down_status = 503
    with pytest.raises(PanelUnavailable, match="503"):
        await panel.create_account(spec())
    assert emulator.count("GET", "/api/system/metadata") == 3  # all retries were spent


async def test_a_dead_host_raises_panel_unavailable(env: Env) -> None:
    panel, emulator, _ = env
    emulator.faults.down = True
    with pytest.raises(PanelUnavailable):
        await panel.nodes()
    emulator.faults.clear()
    assert await panel.nodes()


async def test_an_open_circuit_is_panel_unavailable(env: Env) -> None:
    _, emulator, base_url = env
    emulator.faults.down_status = 502
    http = HttpClient(
        base_url,
        service="remnawave",
        retry=RetryPolicy(attempts=1),
        breaker=CircuitBreaker(threshold=1, cooldown=60),
    )
    panel = RemnawavePanel(base_url, emulator.token, api_version="2", http=http)
    with pytest.raises(PanelUnavailable):
        await panel.nodes()
    with pytest.raises(PanelUnavailable, match="circuit open"):
        await panel.nodes()
    await http.aclose()


async def test_a_lost_create_response_surfaces_as_account_exists(env: Env) -> None:
    """The panel created the user but the answer was lost; the retry must not make a second one."""
    panel, emulator, _ = env
    await panel.generation()
    emulator.faults.fail_next(1, 502, path="/api/users", after_handling=True)
    with pytest.raises(AccountExists):
        await panel.create_account(spec())
    assert len(emulator.users) == 1
    assert (await panel.get_account(AccountRef("tg_1001"))).status == "active"


async def test_malformed_json_is_a_panel_error(env: Env) -> None:
    panel, emulator, _ = env
    created = await panel.create_account(spec())
    emulator.faults.malformed_next(1)
    with pytest.raises(PanelError, match="malformed JSON") as caught:
        await panel.get_account(created.ref)
    assert not isinstance(caught.value, PanelUnavailable)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"users": "nope"}, "no 'users' array"),
        ({"users": [{"username": "x", "status": "ACTIVE"}], "total": 1}, "has no 'uuid'"),
        ({"users": [{"uuid": "u", "username": "x", "status": "ON_HOLD"}], "total": 1}, "unknown status"),
        ([1, 2], "not an object"),
    ],
)
async def test_unexpected_shapes_are_panel_errors_not_key_errors(body: object, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"response": body})

    http = HttpClient("https://rw.example", service="remnawave", transport=httpx.MockTransport(handler))
    panel = RemnawavePanel("https://rw.example", "tok", api_version="2", http=http)
    with pytest.raises(PanelError, match=message):
        async for _ in panel.iter_accounts():
            pass
    await http.aclose()


# ----- the emulator's own fidelity (what the adapter relies on) ----------------------------------------------------


async def test_emulator_speaks_the_documented_shapes(env: Env) -> None:
    _, emulator, base_url = env
    headers = {**PROXY, "Authorization": f"Bearer {emulator.token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        assert (await client.get("/api/users", headers={"Authorization": "Bearer wrong"})).json() == {
            "message": "Unauthorized",
            "statusCode": 401,
        }
        created = await client.post("/api/users", json={"username": "tg_9", "expireAt": "2030-01-01T00:00:00Z"})
        assert created.status_code == 201
        user = created.json()["response"]
        assert ("uuid" in user) is (emulator.version == "2")
        assert user["expireAt"] == "2030-01-01T00:00:00.000Z"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", user["createdAt"])

        duplicate = await client.post("/api/users", json={"username": "tg_9", "expireAt": "2030-01-01T00:00:00Z"})
        assert duplicate.status_code == 400
        assert set(duplicate.json()) == {"timestamp", "path", "message", "errorCode"}
        assert duplicate.json()["errorCode"] == "A019"

        invalid = await client.post("/api/users", json={"username": "x"})
        assert invalid.status_code == 400
        assert invalid.json()["message"] == "Validation failed"
        assert {tuple(e["path"]) for e in invalid.json()["errors"]} == {("username",), ("expireAt",)}

        key = user["uuid"] if emulator.version == "2" else user["id"]
        hwid = {"hwid": "device-00001", ("userUuid" if emulator.version == "2" else "userId"): key}
        assert (await client.post("/api/hwid/devices", json=hwid)).status_code == 200
        assert (await client.post("/api/hwid/devices", json=hwid)).json()["errorCode"] == "A098"

        deleted = await client.delete(f"/api/users/{key}")
        assert deleted.status_code == (200 if emulator.version == "2" else 204)
        missing = await client.get(f"/api/users/{key}")
        assert (missing.status_code, missing.json()["errorCode"]) == (404, "A063")


# ----- the panel as it really behaves (issue 11) ------------------------------------------------------------------


async def test_the_panel_disables_only_active_users_and_marks_expiry_itself(env: Env) -> None:
    """users.service updateUser: DISABLED applies to an ACTIVE user only, and the 30-s job marks EXPIRED."""
    panel, emulator, _ = env
    created = await panel.create_account(spec(expire_at=in_days(1)))
    emulator.user("tg_1001").expire_at = in_days(-1)
    assert (await panel.get_account(created.ref)).status == "active"  # until the job runs
    emulator.review()
    assert (await panel.get_account(created.ref)).status == "expired"

    answer = await panel.modify_account(created.ref, AccountChanges(enabled=False))

    assert answer.status == "expired"  # the PATCH is accepted and changes nothing
    assert emulator.user("tg_1001").status == "EXPIRED"


async def test_subscription_history_forbidden_by_the_token_scope_does_not_fail_the_read() -> None:
    scopes = ["users:*", "system:read", "nodes:read", "internal-squads:read", "hwid-user-devices:*"]
    async with open_remnawave("3", scopes=scopes) as (panel, emulator, _):
        created = await panel.create_account(spec())
        account = await panel.get_account(created.ref)
        assert (account.username, account.status) == ("tg_1001", "active")
        assert account.sub_updated_at is None
        route = key_route(emulator, "/subscription-request-history")
        assert emulator.requests[f"GET {route}"] == 1 and emulator.served[f"GET {route}"] == 0  # refused, 403


async def test_a_missing_scope_elsewhere_is_still_an_auth_error() -> None:
    async with open_remnawave("3", scopes=["users:read"]) as (panel, emulator, _):
        with pytest.raises(PanelAuthError, match="403"):
            await panel.create_account(spec())
        assert emulator.users == {}


@pytest.mark.parametrize("version", VERSIONS)
async def test_extra_headers_and_cookies_reach_a_panel_behind_a_guarding_proxy(version: str) -> None:
    guard = {"required_headers": {"X-Api-Key": "caddy-secret"}, "required_cookies": {"gate": "open sesame"}}
    async with open_remnawave(version, **guard) as (bare, emulator, base_url):
        with pytest.raises(PanelError):
            await bare.create_account(spec("tg_bare"))
        http = HttpClient(base_url, service="remnawave", retry=RetryPolicy(attempts=1), breaker=CircuitBreaker())
        panel = RemnawavePanel(
            base_url,
            emulator.token,
            api_version=version,  # type: ignore[arg-type]
            extra_headers={"X-Api-Key": "caddy-secret"},
            cookies={"gate": "open sesame"},
            http=http,
        )
        try:
            created = await panel.create_account(spec("tg_guarded"))
            assert (await panel.get_account(created.ref)).username == "tg_guarded"
        finally:
            await http.aclose()
        assert list(emulator.by_username) == ["tg_guarded"]


async def test_traffic_strategy_and_note_are_written_and_read_back(env: Env) -> None:
    panel, emulator, _ = env
    created = await panel.create_account(spec(traffic_strategy="month", note="vpnshop-owner:abc order 42"))
    assert emulator.user("tg_1001").traffic_limit_strategy == "MONTH"
    assert (created.traffic_strategy, created.note, created.telegram_id) == (
        "month",
        "vpnshop-owner:abc order 42",
        1001,
    )
    changed = await panel.modify_account(created.ref, AccountChanges(traffic_strategy="no_reset", note="x"))
    assert (changed.traffic_strategy, changed.note) == ("no_reset", "x")
    assert emulator.user("tg_1001").description == "x"


async def test_subscription_links_read_what_a_client_gets_without_registering_a_device(hwid_env: Env) -> None:
    panel, emulator, base_url = hwid_env
    emulator.self_served(base_url)
    created = await panel.create_account(spec(device_limit=1))
    links = await panel.subscription_links(created.subscription_url)
    assert links == emulator.links_of(emulator.user("tg_1001")) and links
    assert emulator.user("tg_1001").devices == {} and not emulator.user("tg_1001").sub_history
    revoked = await panel.revoke_subscription(created.ref)
    assert await panel.subscription_links(created.subscription_url) is None
    assert await panel.subscription_links(revoked.subscription_url) == emulator.links_of(emulator.user("tg_1001"))
