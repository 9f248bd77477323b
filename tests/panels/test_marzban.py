"""MarzbanPanel against the Marzban emulator over real HTTP, on both the v0.7 and the v0.8 dialect."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.kit.http import CircuitBreaker, HttpClient
from app.models import PanelKind
from app.panels.base import (
    AccountChanges,
    AccountExists,
    AccountNotFound,
    AccountRef,
    AccountSpec,
    PanelAuthError,
    PanelError,
    PanelUnavailable,
)
from app.panels.marzban import MarzbanPanel
from app.panels.registry import PanelRegistry, bootstrap_servers
from tests.emulators.marzban import Admin, MarzbanState, User
from tests.panels.marzban_fixture import ADMIN_PASSWORD, ADMIN_USERNAME, loopback_transport, open_marzban

GB = 1024**3
LOGIN = "POST /api/admin/token"
CREATE = "POST /api/user"
GET_USER = "GET /api/user/{username}"
PUT_USER = "PUT /api/user/{username}"
DELETE_USER = "DELETE /api/user/{username}"
LIST_USERS = "GET /api/users"
ALL_VLESS_TAGS = ["VLESS TCP", "VLESS WS"]
VMESS_ONLY = {"vmess": [{"tag": "VMESS TCP", "protocol": "vmess", "network": "tcp", "tls": "none", "port": 20540}]}

Env = tuple[MarzbanPanel, MarzbanState, str]


@pytest.fixture(params=["0.7", "0.8"])
async def marzban(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    async with open_marzban(request.param) as env:
        yield env


@pytest.fixture(params=["0.7", "0.8"])
def version(request: pytest.FixtureRequest) -> str:
    return request.param


# One instant per run: two calls to spec() must build the same expiry even across a second boundary.
ANCHOR = datetime.now(UTC).replace(microsecond=0)


def days_from_now(days: float) -> datetime:
    return ANCHOR + timedelta(days=days)


def spec(username: str = "tg_1001", **overrides: object) -> AccountSpec:
    fields: dict = {"expire_at": days_from_now(30), "traffic_limit_bytes": 50 * GB} | overrides
    return AccountSpec(username, **fields)


def stored(state: MarzbanState, username: str) -> User:
    """The emulator's own record of a user: what the panel really holds, not what the adapter says."""
    user = state.users.get(username)
    assert user is not None, f"{username} is not on the panel"
    return user


def close_to_now(moment: datetime | None) -> bool:
    return moment is not None and moment.tzinfo is not None and abs(datetime.now(UTC) - moment) < timedelta(minutes=1)


# --- lifecycle ------------------------------------------------------------------------------------------------


async def test_create_returns_the_new_vless_account(marzban: Env) -> None:
    panel, state, base_url = marzban
    expire = days_from_now(30)

    account = await panel.create_account(
        spec(expire_at=expire, traffic_limit_bytes=5 * GB, note="trial", telegram_id=7)
    )

    assert (account.username, account.panel_id, account.status) == ("tg_1001", "tg_1001", "active")
    assert account.expire_at == expire
    assert account.traffic_limit_bytes == 5 * GB
    assert (account.used_traffic_bytes, account.lifetime_traffic_bytes, account.device_limit) == (0, 0, None)
    assert account.subscription_url.startswith(f"{base_url}/sub/")
    assert close_to_now(account.created_at)
    user = stored(state, "tg_1001")
    assert (user.note, user.expire) == ("trial tg:7", int(expire.timestamp()))
    assert len(account.links) == 2
    assert all(link.startswith(f"vless://{user.proxies['vless']['id']}@") for link in account.links)


async def test_create_without_limits_is_unlimited_and_never_expires(marzban: Env) -> None:
    panel, state, _ = marzban

    account = await panel.create_account(spec(expire_at=None, traffic_limit_bytes=None))

    assert (account.expire_at, account.traffic_limit_bytes) == (None, None)
    user = stored(state, "tg_1001")
    assert (user.expire, user.data_limit) == (None, None)


async def test_create_disabled_account(marzban: Env) -> None:
    panel, state, _ = marzban

    account = await panel.create_account(spec(enabled=False))

    assert account.status == "disabled"
    assert stored(state, "tg_1001").status == "disabled"


async def test_duplicate_create_raises_account_exists(marzban: Env) -> None:
    panel, state, _ = marzban
    await panel.create_account(spec())

    with pytest.raises(AccountExists, match="User already exists"):
        await panel.create_account(spec(note="second"))

    assert len(state.users) == 1
    assert stored(state, "tg_1001").note == ""


async def test_get_reads_usage_and_online_state(marzban: Env) -> None:
    panel, state, _ = marzban
    await panel.create_account(spec())
    state.record_usage("tg_1001", 123_456)

    account = await panel.get_account(AccountRef("tg_1001"))

    assert (account.used_traffic_bytes, account.lifetime_traffic_bytes) == (123_456, 123_456)
    assert close_to_now(account.online_at)


async def test_get_missing_account_raises_not_found(marzban: Env) -> None:
    panel, _, _ = marzban
    with pytest.raises(AccountNotFound):
        await panel.get_account(AccountRef("nobody_here"))


async def test_modify_extends_expiry_and_changes_limits(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec(expire_at=days_from_now(1)))).ref
    later = days_from_now(60)

    extended = await panel.modify_account(ref, AccountChanges(expire_at=later, traffic_limit_bytes=10 * GB))
    assert (extended.expire_at, extended.traffic_limit_bytes, extended.status) == (later, 10 * GB, "active")

    unlimited = await panel.modify_account(ref, AccountChanges(traffic_limit_bytes=0, clear_expiry=True))
    assert (unlimited.expire_at, unlimited.traffic_limit_bytes) == (None, None)
    user = stored(state, "tg_1001")
    assert (user.expire, user.data_limit) == (None, None)


async def test_modify_disables_and_enables(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref

    assert (await panel.modify_account(ref, AccountChanges(enabled=False))).status == "disabled"
    assert stored(state, "tg_1001").status == "disabled"
    assert (await panel.modify_account(ref, AccountChanges(enabled=True))).status == "active"


async def test_past_expiry_expires_and_a_new_one_reactivates(marzban: Env) -> None:
    panel, _, _ = marzban
    ref = (await panel.create_account(spec())).ref

    expired = await panel.modify_account(ref, AccountChanges(expire_at=days_from_now(-1)))
    assert expired.status == "expired"
    renewed = await panel.modify_account(ref, AccountChanges(expire_at=days_from_now(30)))
    assert renewed.status == "active"


async def test_modify_missing_account_raises_not_found(marzban: Env) -> None:
    panel, _, _ = marzban
    with pytest.raises(AccountNotFound):
        await panel.modify_account(AccountRef("nobody_here"), AccountChanges(enabled=False))


async def test_modify_without_changes_only_reads(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref

    account = await panel.modify_account(ref, AccountChanges())

    assert account.username == "tg_1001"
    assert state.requests[PUT_USER] == 0


async def test_delete_is_idempotent(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref

    await panel.delete_account(ref)
    await panel.delete_account(ref)

    assert "tg_1001" not in state.users
    with pytest.raises(AccountNotFound):
        await panel.get_account(ref)
    # v0.8.4 answers 500 after deleting an env-sudo user; the retry's 404 counts as done (§1.8 bug 1).
    assert state.requests[DELETE_USER] == (3 if state.version == "0.8" else 2)


async def test_delete_on_v08_with_a_db_admin_is_one_call() -> None:
    async with open_marzban("0.8", env_sudo=False) as (panel, state, _):
        ref = (await panel.create_account(spec())).ref
        await panel.delete_account(ref)
        assert state.requests[DELETE_USER] == 1
        assert "tg_1001" not in state.users


async def test_reset_zeroes_usage_and_keeps_lifetime(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.record_usage("tg_1001", 5000)

    account = await panel.reset_traffic(ref)

    assert (account.used_traffic_bytes, account.lifetime_traffic_bytes, account.status) == (0, 5000, "active")


async def test_reset_lifts_a_traffic_limit(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec(traffic_limit_bytes=1000))).ref
    state.record_usage("tg_1001", 2000)
    assert state.review_users() == ["tg_1001"]
    assert (await panel.get_account(ref)).status == "limited"

    assert (await panel.reset_traffic(ref)).status == "active"


async def test_reset_keeps_a_disabled_account_disabled(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec(enabled=False))).ref
    puts_before = state.requests[PUT_USER]

    account = await panel.reset_traffic(ref)

    # Marzban's reset re-activates disabled users; the adapter must put the status back.
    assert account.status == "disabled"
    assert stored(state, "tg_1001").status == "disabled"
    assert state.requests[PUT_USER] == puts_before + 1


async def test_reset_keeps_an_on_hold_account_on_hold(marzban: Env) -> None:
    panel, state, _ = marzban
    user = state.add_user("tg_1001", status="on_hold")
    user.on_hold_expire_duration = 30 * 86400
    state.log.clear()

    account = await panel.reset_traffic(AccountRef("tg_1001"))

    assert account.status == "on_hold"
    assert (user.status, user.on_hold_expire_duration, user.expire) == ("on_hold", 30 * 86400, None)
    assert [route for route, _ in state.log] == [
        LOGIN,
        GET_USER,
        "POST /api/user/{username}/reset",
        PUT_USER,
    ]


async def test_revoke_kills_the_old_subscription_link(marzban: Env) -> None:
    panel, state, _ = marzban
    before = await panel.create_account(spec())
    async with httpx.AsyncClient(transport=loopback_transport()) as client:
        assert (await client.get(before.subscription_url)).status_code == 200
        state.advance(2)  # a token minted in the revoke's own second would stay valid (§1.3 gotcha)

        after = await panel.revoke_subscription(before.ref)

        old = await client.get(before.subscription_url)
        new = await client.get(after.subscription_url)
    assert after.subscription_url != before.subscription_url
    assert set(after.links).isdisjoint(before.links)  # new proxy UUID
    assert old.status_code == (404 if state.version == "0.8" else 204)
    assert new.status_code == 200
    assert base64.b64decode(new.text).decode().splitlines() == after.links


async def test_iter_accounts_pages_through_every_account(marzban: Env) -> None:
    panel, state, _ = marzban
    state.seed(1200, prefix="bulk_")

    pages = [page async for page in panel.iter_accounts(page_size=500)]

    assert [len(page) for page in pages] == [500, 500, 200]
    names = [account.username for page in pages for account in page]
    assert names == [f"bulk_{index}" for index in range(1200)]
    assert state.requests[LIST_USERS] == 3


async def test_iter_accounts_on_an_empty_panel(marzban: Env) -> None:
    panel, state, _ = marzban
    assert [page async for page in panel.iter_accounts()] == []
    assert state.requests[LIST_USERS] == 1


async def test_iter_accounts_skips_nothing_after_deletions(marzban: Env) -> None:
    panel, state, _ = marzban
    state.seed(30, prefix="bulk_")
    for index in range(0, 30, 3):
        state.users.remove(f"bulk_{index}")

    names = [a.username for page in [p async for p in panel.iter_accounts(page_size=7)] for a in page]

    assert names == [f"bulk_{index}" for index in range(30) if index % 3]


# --- authentication -------------------------------------------------------------------------------------------


async def test_token_is_reused_across_calls(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    await panel.get_account(ref)
    await panel.modify_account(ref, AccountChanges(enabled=False))

    assert state.requests[LOGIN] == 1


async def test_revoked_token_means_exactly_one_relogin(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.expire_tokens()

    account = await panel.get_account(ref)

    assert account.username == "tg_1001"
    assert state.requests[LOGIN] == 2
    assert state.requests[GET_USER] == 2  # the 401 and the retry with the fresh token


async def test_token_past_its_exp_claim_is_renewed(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.advance(86_400 + 5)  # Marzban's default 24 h token lifetime

    await panel.get_account(ref)

    assert state.requests[LOGIN] == 2


async def test_concurrent_calls_share_one_relogin(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.expire_tokens()

    accounts = await asyncio.gather(*(panel.get_account(ref) for _ in range(5)))

    assert {account.username for account in accounts} == {"tg_1001"}
    assert state.requests[LOGIN] == 2


async def test_bad_credentials_raise_auth_error(version: str) -> None:
    async with open_marzban(version, password="wrong") as (panel, state, _):
        with pytest.raises(PanelAuthError, match="Incorrect username or password"):
            await panel.get_account(AccountRef("tg_1001"))
        assert state.requests[LOGIN] == 1
        assert state.requests[GET_USER] == 0


async def test_rejected_fresh_token_raises_auth_error(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.fail_next(5, 401, route=GET_USER, detail="Could not validate credentials")

    with pytest.raises(PanelAuthError, match="Could not validate credentials"):
        await panel.get_account(ref)

    assert state.requests[LOGIN] == 2  # the first login and exactly one more
    assert state.requests[GET_USER] == 2


async def test_non_sudo_admin_cannot_list_nodes(version: str) -> None:
    async with open_marzban(version, admins=(Admin(ADMIN_USERNAME, ADMIN_PASSWORD, is_sudo=False),)) as env:
        with pytest.raises(PanelAuthError, match="not allowed"):
            await env[0].nodes()


# --- outages and retries --------------------------------------------------------------------------------------


async def test_server_error_is_retried_and_creates_once(marzban: Env) -> None:
    panel, state, _ = marzban
    state.fail_next(1, 500, route=CREATE)

    account = await panel.create_account(spec())

    assert account.status == "active"
    assert (state.requests[CREATE], state.handled[CREATE]) == (2, 1)
    assert len(state.users) == 1


async def test_throttling_is_retried(marzban: Env) -> None:
    panel, state, _ = marzban
    state.throttle_next(1, retry_after=0, route=CREATE)

    await panel.create_account(spec())

    assert (state.requests[CREATE], state.handled[CREATE]) == (2, 1)


async def test_long_retry_after_is_left_to_the_caller(marzban: Env) -> None:
    panel, state, _ = marzban
    state.throttle_next(3, retry_after=120, route=CREATE)

    with pytest.raises(PanelUnavailable, match="429"):
        await panel.create_account(spec())

    assert state.requests[CREATE] == 1
    assert len(state.users) == 0


@pytest.mark.parametrize("mode", ["503", "drop"])
async def test_a_down_panel_is_unavailable_until_it_returns(marzban: Env, mode: Literal["503", "drop"]) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.down(mode)

    with pytest.raises(PanelUnavailable) as caught:
        await panel.get_account(ref)

    assert not isinstance(caught.value, AccountNotFound | PanelAuthError)
    assert state.requests[GET_USER] == 3  # every attempt of the retry policy
    state.up()
    assert (await panel.get_account(ref)).status == "active"


async def test_an_open_circuit_is_unavailable_without_calling(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.down("503")
    for _ in range(2):  # 6 failed attempts open the breaker (threshold 5)
        with pytest.raises(PanelUnavailable):
            await panel.get_account(ref)
    calls = state.requests[GET_USER]

    with pytest.raises(PanelUnavailable, match="circuit open"):
        await panel.get_account(ref)

    assert state.requests[GET_USER] == calls


async def test_a_timeout_is_retried(version: str) -> None:
    async with open_marzban(version, timeout=0.3) as (panel, state, _):
        ref = (await panel.create_account(spec())).ref
        state.delay_next(1, 3.0, route=GET_USER)

        account = await panel.get_account(ref)

        assert account.username == "tg_1001"
        assert state.requests[GET_USER] == 2


@pytest.mark.parametrize("handled", [False, True])
async def test_a_timed_out_create_leaves_exactly_one_account(version: str, handled: bool) -> None:
    async with open_marzban(version, timeout=0.3) as (panel, state, _):
        state.delay_next(1, 3.0, route=CREATE, handle=handled)

        try:
            account = await panel.create_account(spec())
        except AccountExists:
            # The first attempt landed after the client gave up; the caller resolves this with get_account.
            assert handled, "a lost request cannot leave an account behind"
            account = await panel.get_account(AccountRef("tg_1001"))

        assert account.username == "tg_1001"
        assert len(state.users) == 1
        assert state.requests[CREATE] == 2


# --- malformed answers ----------------------------------------------------------------------------------------


async def test_malformed_json_is_a_panel_error_and_leaves_the_adapter_intact(marzban: Env) -> None:
    panel, state, _ = marzban
    ref = (await panel.create_account(spec())).ref
    state.malform_next(1, route=GET_USER)

    with pytest.raises(PanelError, match="malformed JSON") as caught:
        await panel.get_account(ref)

    assert type(caught.value) is PanelError
    assert (await panel.get_account(ref)).username == "tg_1001"
    assert state.requests[LOGIN] == 1


async def test_malformed_login_keeps_no_token(marzban: Env) -> None:
    panel, state, _ = marzban
    state.malform_next(1, route=LOGIN)

    with pytest.raises(PanelError, match="malformed JSON"):
        await panel.get_account(AccountRef("tg_1001"))
    assert state.requests[GET_USER] == 0
    with pytest.raises(AccountNotFound):
        await panel.get_account(AccountRef("tg_1001"))

    assert state.requests[LOGIN] == 2


@pytest.mark.parametrize("handled", [False, True])
async def test_malformed_create_answer(marzban: Env, handled: bool) -> None:
    panel, state, _ = marzban
    state.malform_next(1, route=CREATE, handle=handled)

    with pytest.raises(PanelError, match="malformed JSON"):
        await panel.create_account(spec())

    # The panel's side is whatever it did; ours holds nothing half-parsed, and a retry is safe either way.
    assert ("tg_1001" in state.users) is handled
    if handled:
        with pytest.raises(AccountExists):
            await panel.create_account(spec())
    else:
        assert (await panel.create_account(spec())).status == "active"
    assert len(state.users) == 1


@pytest.mark.parametrize(
    ("route", "body", "complaint"),
    [
        (GET_USER, b'{"detail": "ok"}', "no 'username' field"),
        (GET_USER, b'["tg_1001"]', "expected a JSON object"),
        (GET_USER, b'{"username": "tg_1001", "status": "frozen"}', "unknown status 'frozen'"),
        (LIST_USERS, b'{"users": "everyone", "total": 1}', "'users' = 'everyone'"),
        (LIST_USERS, b'{"users": []}', "no 'total' field"),
    ],
)
async def test_wrong_shapes_are_panel_errors(marzban: Env, route: str, body: bytes, complaint: str) -> None:
    panel, state, _ = marzban
    state.add_user("tg_1001")
    state.malform_next(1, route=route, body=body)

    with pytest.raises(PanelError, match=complaint):
        if route == LIST_USERS:
            [page async for page in panel.iter_accounts()]
        else:
            await panel.get_account(AccountRef("tg_1001"))


async def test_mistyped_fields_are_named(marzban: Env) -> None:
    panel, state, base_url = marzban
    await panel.create_account(spec())
    async with httpx.AsyncClient(transport=loopback_transport()) as client:
        api = await authorized(client, base_url)
        user = (await api.get(f"{base_url}/api/user/tg_1001")).json()
    user["expire"] = "next year"
    state.malform_next(1, route=GET_USER, body=httpx.Response(200, json=user).content)

    with pytest.raises(PanelError, match="'expire' = 'next year'"):
        await panel.get_account(AccountRef("tg_1001"))


# --- validation and inbounds ----------------------------------------------------------------------------------


async def test_validation_errors_carry_the_panel_message(marzban: Env) -> None:
    panel, state, _ = marzban

    with pytest.raises(PanelError, match="Username only can be 3 to 32 characters") as bad_name:
        await panel.create_account(spec("x!"))
    with pytest.raises(PanelError, match="greater than or equal to 0") as bad_limit:
        await panel.create_account(spec(traffic_limit_bytes=-1))

    for caught in (bad_name, bad_limit):
        assert type(caught.value) is PanelError and "HTTP 422" in str(caught.value)
    assert ("Value error" in str(bad_name.value)) is (state.version == "0.8")
    assert len(state.users) == 0


async def test_unknown_configured_inbound_is_rejected(version: str) -> None:
    async with open_marzban(version, inbounds={"vless": ["NOPE"]}) as (panel, state, _):
        with pytest.raises(PanelError, match="Inbound NOPE doesn't exist"):
            await panel.create_account(spec())
        assert len(state.users) == 0


async def test_vless_disabled_on_the_server_is_rejected(version: str) -> None:
    async with open_marzban(version, inbounds={"vless": ["VMESS TCP"]}, xray_inbounds=VMESS_ONLY) as env:
        panel, state, _ = env
        with pytest.raises(PanelError, match=r"HTTP 400\): Protocol vless is disabled on your server"):
            await panel.create_account(spec())
        assert len(state.users) == 0


async def test_panel_without_vless_inbounds_fails_before_creating(version: str) -> None:
    async with open_marzban(version, xray_inbounds=VMESS_ONLY) as (panel, state, _):
        with pytest.raises(PanelError, match="no VLESS inbound"):
            await panel.create_account(spec())
        assert state.requests[CREATE] == 0


async def test_inbounds_are_always_sent_so_v08_users_get_them(marzban: Env) -> None:
    panel, state, _ = marzban

    accounts = [await panel.create_account(spec(f"tg_{index}")) for index in range(3)]

    for account in accounts:
        assert stored(state, account.username).inbounds == {"vless": ALL_VLESS_TAGS}
        assert len(account.links) == 2
    assert state.requests["GET /api/inbounds"] == 1  # discovered once, then cached


async def test_omitted_inbounds_leave_v08_users_without_links(version: str) -> None:
    # Proves the emulator reproduces the §1.8 bug, which is what gives the test above its teeth.
    async with open_marzban(version) as (_, _, base_url), httpx.AsyncClient(transport=loopback_transport()) as client:
        api = await authorized(client, base_url)
        user = (await api.post(f"{base_url}/api/user", json={"username": "raw_1", "proxies": {"vless": {}}})).json()

    tags = [] if version == "0.8" else ALL_VLESS_TAGS
    assert user["inbounds"] == {"vless": tags}
    assert len(user["links"]) == len(tags)


async def test_configured_inbounds_skip_discovery(version: str) -> None:
    async with open_marzban(version, inbounds={"vless": ["VLESS WS"]}) as (panel, state, _):
        account = await panel.create_account(spec())
        assert stored(state, "tg_1001").inbounds == {"vless": ["VLESS WS"]}
        assert len(account.links) == 1 and "type=ws" in account.links[0]
        assert state.requests["GET /api/inbounds"] == 0


async def test_flow_is_sent(version: str) -> None:
    async with open_marzban(version, flow="xtls-rprx-vision") as (panel, state, _):
        account = await panel.create_account(spec())
        assert stored(state, "tg_1001").proxies["vless"]["flow"] == "xtls-rprx-vision"
        assert all("flow=xtls-rprx-vision" in link for link in account.links)


# --- subscription, devices, nodes, system ---------------------------------------------------------------------


async def test_subscription_serves_base64_links_and_userinfo(marzban: Env) -> None:
    panel, state, _ = marzban
    expire = days_from_now(30)
    account = await panel.create_account(spec(expire_at=expire, traffic_limit_bytes=5 * GB))
    state.record_usage("tg_1001", 1000)

    async with httpx.AsyncClient(transport=loopback_transport()) as client:
        response = await client.get(account.subscription_url, headers={"User-Agent": "v2rayNG/1.8.19"})

    assert response.status_code == 200
    assert base64.b64decode(response.text).decode().splitlines() == account.links
    userinfo = f"upload=0; download=1000; total={5 * GB}; expire={int(expire.timestamp())}"
    assert response.headers["subscription-userinfo"] == userinfo
    seen = await panel.get_account(account.ref)
    assert seen.sub_last_user_agent == "v2rayNG/1.8.19"
    assert close_to_now(seen.sub_updated_at)


async def test_relative_subscription_urls_are_made_absolute(marzban: Env) -> None:
    panel, state, base_url = marzban
    state.sub_url_prefix = ""  # Marzban without XRAY_SUBSCRIPTION_URL_PREFIX answers "/sub/<token>"

    account = await panel.create_account(spec())

    assert account.subscription_url.startswith(f"{base_url}/sub/")
    async with httpx.AsyncClient(transport=loopback_transport()) as client:
        assert (await client.get(account.subscription_url)).status_code == 200


async def test_devices_are_not_supported(marzban: Env) -> None:
    panel, _, _ = marzban
    ref = (await panel.create_account(spec())).ref

    assert panel.supports_devices is False
    assert await panel.list_devices(ref) == []
    with pytest.raises(PanelError, match="no device"):
        await panel.delete_device(ref, "hwid-1")


async def test_nodes_report_health(marzban: Env) -> None:
    panel, state, _ = marzban
    state.add_node("de-1", address="10.0.0.2")
    state.add_node("nl-1", address="10.0.0.3", status="error", message="connection refused")
    state.add_node("fi-1", address="10.0.0.4", status="disabled")

    nodes = await panel.nodes()

    summary = [(n.external_id, n.name, n.address, n.port, n.is_online, n.is_enabled, n.message) for n in nodes]
    assert summary == [
        ("1", "de-1", "10.0.0.2", 62050, True, True, ""),
        ("2", "nl-1", "10.0.0.3", 62050, False, True, "connection refused"),
        ("3", "fi-1", "10.0.0.4", 62050, False, False, ""),
    ]


async def test_system_counts_users(marzban: Env) -> None:
    panel, state, _ = marzban
    for index in range(3):
        await panel.create_account(spec(f"tg_{index}", enabled=index != 2))
    state.record_usage("tg_0", 10)

    info = await panel.system()

    assert info.version == ("0.8.4" if state.version == "0.8" else "0.7.0")
    assert (info.total_users, info.active_users) == (3, 2)
    assert info.online_users == (1 if state.version == "0.8" else None)


async def test_a_wrong_base_url_is_not_a_missing_account(marzban: Env) -> None:
    _, _, base_url = marzban
    http = HttpClient(f"{base_url}/nope", service="marzban", breaker=CircuitBreaker(), transport=loopback_transport())
    panel = MarzbanPanel(f"{base_url}/nope", ADMIN_USERNAME, ADMIN_PASSWORD, http=http)
    try:
        with pytest.raises(PanelError, match="no such endpoint") as caught:
            await panel.delete_account(AccountRef("tg_1001"))
        assert not isinstance(caught.value, AccountNotFound)
    finally:
        await panel.aclose()


# --- the emulator speaks the reference ------------------------------------------------------------------------


async def authorized(client: httpx.AsyncClient, base_url: str) -> httpx.AsyncClient:
    """Log `client` in with the form-encoded token endpoint and keep the bearer token on it."""
    response = await client.post(
        f"{base_url}/api/admin/token", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200 and response.json()["token_type"] == "bearer"
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return client


async def test_emulator_token_endpoint_is_form_encoded_and_jwt(marzban: Env) -> None:
    _, state, base_url = marzban
    async with httpx.AsyncClient(transport=loopback_transport()) as client:
        as_json = await client.post(f"{base_url}/api/admin/token", json={"username": "admin", "password": "admin"})
        wrong = await client.post(f"{base_url}/api/admin/token", data={"username": "admin", "password": "nope"})
        no_header = await client.get(f"{base_url}/api/users")
        await authorized(client, base_url)
        token = client.headers["Authorization"].removeprefix("Bearer ")
        state.expire_tokens()
        stale = await client.get(f"{base_url}/api/users")

    assert as_json.status_code == 422
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Incorrect username or password"})
    assert (no_header.status_code, no_header.json()) == (401, {"detail": "Not authenticated"})
    assert (stale.status_code, stale.json()) == (401, {"detail": "Could not validate credentials"})
    assert stale.headers["www-authenticate"] == "Bearer"
    claims = base64.urlsafe_b64decode(token.split(".")[1] + "==")
    assert b'"sub":"admin"' in claims and b'"access":"sudo"' in claims and b'"exp":' in claims


async def test_emulator_user_responses_match_the_reference(marzban: Env) -> None:
    _, state, base_url = marzban
    async with httpx.AsyncClient(transport=loopback_transport()) as client:
        api = await authorized(client, base_url)
        body = {"username": "probe_user", "proxies": {"vless": {}}, "inbounds": {"vless": ["VLESS TCP"]}}
        created = await api.post(f"{base_url}/api/user", json=body | {"expire": 1797840705, "data_limit": 0})
        again = await api.get(f"{base_url}/api/user/probe_user")
        duplicate = await api.post(f"{base_url}/api/user", json=body)
        invalid = await api.post(f"{base_url}/api/user", json={"username": "a", "proxies": {}, "data_limit": -1})
        listing = await api.get(f"{base_url}/api/users", params={"offset": 0, "limit": 1})
        deleted = await api.delete(f"{base_url}/api/user/probe_user")

    user = created.json()
    assert created.status_code == 200  # not 201
    assert (user["expire"], user["data_limit"], user["status"]) == (1797840705, None, "active")
    assert "T" in user["created_at"] and not user["created_at"].endswith("Z") and "+" not in user["created_at"]
    assert user["excluded_inbounds"] == {"vless": ["VLESS WS"]}
    assert ("next_plan" in user) is (state.version == "0.8")
    assert again.json()["proxies"] == user["proxies"]
    assert (duplicate.status_code, duplicate.json()) == (409, {"detail": "User already exists"})
    assert invalid.status_code == 422 and set(invalid.json()["detail"]) == {"username", "proxies", "data_limit"}
    assert listing.json()["total"] == 1 and len(listing.json()["users"]) == 1
    if state.version == "0.7":
        assert (deleted.status_code, deleted.json()) == (200, {"detail": "User successfully deleted"})
    else:
        assert deleted.status_code == 500  # env-sudo owned user: §1.8 bug 1
    assert "probe_user" not in state.users


async def test_emulator_listing_filters_usage_and_fresh_sub_urls(marzban: Env) -> None:
    _, state, base_url = marzban
    for index in range(5):
        state.add_user(f"list_{index}", status="disabled" if index % 2 else "active")
    state.record_usage("list_0", 42)
    async with httpx.AsyncClient(transport=loopback_transport()) as client:
        api = await authorized(client, base_url)
        by_name = await api.get(f"{base_url}/api/users", params={"username": ["list_3", "list_1", "nobody"]})
        disabled = await api.get(f"{base_url}/api/users", params={"status": "disabled", "limit": 1})
        bad_status = await api.get(f"{base_url}/api/users", params={"status": "frozen"})
        usage = await api.get(f"{base_url}/api/user/list_0/usage")
        first = (await api.get(f"{base_url}/api/user/list_0")).json()["subscription_url"]
        state.advance(1)
        second = (await api.get(f"{base_url}/api/user/list_0")).json()["subscription_url"]

    assert [u["username"] for u in by_name.json()["users"]] == ["list_3", "list_1"]
    assert by_name.json()["total"] == 2
    assert [u["username"] for u in disabled.json()["users"]] == ["list_1"] and disabled.json()["total"] == 2
    assert bad_status.status_code == 422 and set(bad_status.json()["detail"]) == {"status"}
    assert usage.json() == {
        "username": "list_0",
        "usages": [{"node_id": None, "node_name": "Master", "used_traffic": 42}],
    }
    assert first != second  # a new token every second: a link, never an identity


async def test_emulator_pages_50k_users_in_o_page() -> None:
    async with open_marzban("0.8") as (_, state, base_url):
        state.seed(50_000, prefix="bench_")
        async with httpx.AsyncClient(transport=loopback_transport()) as client:
            api = await authorized(client, base_url)
            started = asyncio.get_running_loop().time()
            last = await api.get(f"{base_url}/api/users", params={"offset": 49_900, "limit": 100})
            elapsed = asyncio.get_running_loop().time() - started

    page = last.json()
    assert page["total"] == 50_000
    assert [u["username"] for u in page["users"]] == [f"bench_{index}" for index in range(49_900, 50_000)]
    assert elapsed < 0.5  # ~0.01 s measured; rendering all 50k users before slicing takes about a second


# --- MARZBAN_API_TOKEN ----------------------------------------------------------------------------------------------


async def test_a_ready_made_api_token_works_without_a_login(version: str) -> None:
    async with open_marzban(version, api_token=True) as (panel, state, _):
        created = await panel.create_account(spec())
        assert (await panel.get_account(created.ref)).username == "tg_1001"
        assert state.requests[LOGIN] == 0

        state.expire_tokens()  # revoked by a password change, or past its lifetime
        with pytest.raises(PanelAuthError, match="API token was rejected and no admin login is configured"):
            await panel.get_account(created.ref)
        assert state.requests[LOGIN] == 0


async def test_the_api_token_from_the_environment_reaches_the_panel(db: AsyncSession, version: str) -> None:
    async with open_marzban(version) as (_, state, base_url):
        token = state.issue_token(next(iter(state.admins.values())))
        settings = load_settings(marzban_api_url=base_url, marzban_api_token=token, demo_mode=True)
        [server] = [s for s in await bootstrap_servers(db, settings) if s.panel_kind == PanelKind.MARZBAN]
        registry = PanelRegistry(async_sessionmaker(db.bind), settings)
        try:
            panel = registry.for_server(server)
            assert isinstance(panel, MarzbanPanel)
            await panel.create_account(spec("from_env"))
        finally:
            await registry.aclose()
        assert stored(state, "from_env").username == "from_env"
        assert state.requests[LOGIN] == 0
