"""An account's life through the provisioning service and the outbox, on a real panel adapter and emulator:
created once, changed, ended and revived, revoked, moved, deleted; and what happens when the panel's answer is
lost or garbled."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from app.audit.service import Actor
from app.db import transaction
from app.kit.clock import utcnow
from app.models import OutboxStatus, User
from app.panels.ownership import installation_prefix
from app.provisioning.service import DELETE_TOPIC, REVOKE_TOPIC, SYNC_TOPIC, device_limits_enforced, panel_username
from app.users import staff_actions as users
from tests.provisioning.conftest import EnvFactory, PanelEnv, Shop, outcome, subscription_url, unix

GIB = 2**30


async def provisioned(shop: Shop, env: PanelEnv, telegram_id: int = 1001, **options: object) -> tuple[int, int]:
    """A subscription whose account exists on the panel; returns (subscription id, account id)."""
    subscription = await shop.add_subscription(telegram_id)
    account = await shop.ensure(subscription.id, **options)
    assert await shop.dispatch() == outcome(done=1)
    return subscription.id, account.id


async def test_ensure_account_creates_exactly_one_panel_account(shop: Shop, panel_env: PanelEnv) -> None:
    server = await shop.add_server(panel_env, "nl-1")
    subscription = await shop.add_subscription(1001, days=30)

    account = await shop.ensure(subscription.id, traffic_limit_bytes=50 * GIB)

    # Nothing has reached the panel yet: the account is recorded and the creation queued with it.
    assert (account.status, account.panel_id, account.server_id) == ("pending", None, server.id)
    async with shop.sessionmaker() as session:
        prefix = await installation_prefix(session)
    assert account.panel_username == panel_username(prefix, subscription.id)
    assert not panel_env.has(account.panel_username)
    [message] = await shop.pending()
    assert (message.topic, message.payload) == (SYNC_TOPIC, {"account_id": account.id})

    assert await shop.dispatch() == outcome(done=1)

    assert panel_env.creates() == 1
    username = account.panel_username
    assert panel_env.expire_of(username) == unix(subscription.ends_at)
    assert panel_env.status_of(username) == "active"
    assert panel_env.limits_of(username) == (50 * GIB, None)
    stored = await shop.account(account.id)
    assert stored.status == "active"
    assert stored.panel_id == panel_env.panel_id_of(username)
    assert stored.provisioned_at is not None and stored.last_synced_at is not None
    url = subscription_url(stored)
    assert url not in stored.subscription_url_encrypted  # stored encrypted, not in clear
    assert panel_env.link_user(url) == username


async def test_ensure_account_twice_is_the_same_account(shop: Shop, panel_env: PanelEnv) -> None:
    await shop.add_server(panel_env, "nl-1")
    subscription_id, account_id = await provisioned(shop, panel_env)

    again = await shop.ensure(subscription_id)

    assert again.id == account_id
    assert await shop.pending() == []
    assert await shop.dispatch() == outcome()
    assert panel_env.creates() == 1


async def test_lost_create_answer_is_retried_into_one_account(shop: Shop, open_env: EnvFactory) -> None:
    """Marzban carries the create out but its answer arrives garbled: the retry finds the account instead."""
    env = open_env("marzban")
    await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    env.arm_lost_create()

    assert await shop.dispatch() == outcome(retry=1)

    [message] = await shop.pending()
    assert message.attempts == 1 and "malformed JSON" in (message.last_error or "")
    assert env.has(account.panel_username)  # the panel did create it
    assert (await shop.account(account.id)).status == "pending"

    shop.travel(seconds=5)  # past the first backoff (2 s ± 20 %)
    assert await shop.dispatch() == outcome(done=1)

    assert env.creates() == 1
    assert env.expire_of(account.panel_username) == unix(subscription.ends_at)
    stored = await shop.account(account.id)
    assert stored.status == "active" and stored.panel_id == env.panel_id_of(account.panel_username)
    assert env.link_user(subscription_url(stored)) == account.panel_username


async def test_lost_create_answer_on_remnawave_is_resolved_in_line(shop: Shop, open_env: EnvFactory) -> None:
    """Remnawave 3 creates the user and answers 500: the HTTP retry gets "username exists" (A019), and the
    handler converges onto the account that exists instead of making a second one."""
    env = open_env("remnawave")
    await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    env.arm_lost_create()

    assert await shop.dispatch() == outcome(done=1)

    emulator = env.emulator  # type: ignore[attr-defined]
    assert emulator.count("POST", "/api/users") == 2  # the lost one and the retry refused as a duplicate
    assert [user.username for user in emulator.users.values()] == [account.panel_username]
    stored = await shop.account(account.id)
    assert stored.status == "active"
    assert stored.panel_id == env.panel_id_of(account.panel_username)
    assert env.expire_of(account.panel_username) == unix(subscription.ends_at)


@pytest.mark.parametrize(
    "body",
    [b'{"username": "vs0000', b'{"detail": "ok"}', b"[]"],
    ids=["truncated", "wrong-shape", "not-an-object"],
)
async def test_malformed_panel_answer_changes_nothing_and_is_retried(
    shop: Shop, open_env: EnvFactory, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    env = open_env("marzban")
    await shop.add_server(env, "nl-1")
    subscription_id, account_id = await provisioned(shop, env)
    before = await shop.account(account_id)
    old_end = (await shop.subscription(subscription_id)).ends_at
    new_end = utcnow() + timedelta(days=60)
    await shop.extend(subscription_id, new_end)
    env.arm_malformed_update(body)

    with caplog.at_level(logging.WARNING, logger="app.outbox.service"):
        assert await shop.dispatch() == outcome(retry=1)

    [message] = await shop.pending()
    assert message.topic == SYNC_TOPIC and message.attempts == 1
    assert (message.last_error or "").startswith("PanelError: marzban:")
    assert any("panel.sync_account" in record.getMessage() for record in caplog.records)
    after = await shop.account(account_id)
    assert (after.status, after.panel_id, after.subscription_url_encrypted, after.last_synced_at) == (
        before.status,
        before.panel_id,
        before.subscription_url_encrypted,
        before.last_synced_at,
    )
    assert env.expire_of(before.panel_username) == unix(old_end)  # the garbled update was not carried out

    shop.travel(seconds=5)
    assert await shop.dispatch() == outcome(done=1)

    assert env.expire_of(before.panel_username) == unix(new_end)
    [done] = [m for m in await shop.messages() if m.id == message.id]
    assert done.status == OutboxStatus.DONE and done.last_error is None and done.attempts == 2
    assert (await shop.account(account_id)).last_synced_at is not None


async def test_limits_and_extensions_reach_the_panel(shop: Shop, panel_env: PanelEnv) -> None:
    await shop.add_server(panel_env, "nl-1")
    subscription_id, account_id = await provisioned(shop, panel_env)
    username = (await shop.account(account_id)).panel_username

    await shop.set_limits(account_id, device_limit=2, traffic_limit_bytes=20 * GIB)
    new_end = utcnow() + timedelta(days=90)
    await shop.extend(subscription_id, new_end)
    assert await shop.dispatch() == outcome(done=2)

    assert panel_env.expire_of(username) == unix(new_end)
    assert panel_env.limits_of(username) == (20 * GIB, 2 if panel_env.name == "remnawave" else None)
    assert panel_env.creates() == 1


async def test_expired_subscription_stays_off_and_payment_revives_the_same_account(
    shop: Shop, panel_env: PanelEnv
) -> None:
    await shop.add_server(panel_env, "nl-1")
    subscription_id, account_id = await provisioned(shop, panel_env)
    username = (await shop.account(account_id)).panel_username
    record = panel_env.user(username)
    if panel_env.name == "remnawave":
        panel_env.add_device(username, "hwid-phone")

    shop.travel(days=31)  # past the end date, on both sides
    panel_env.review()
    await shop.end(subscription_id)
    writes = len(panel_env.writes())
    assert await shop.dispatch() == outcome(done=1)

    # The panel's own job marked it expired. Remnawave refuses to disable a user that is not ACTIVE (a re-sent
    # PATCH would never converge), so expired is off there; Marzban disables it, which a traffic reset then keeps.
    off = "expired" if panel_env.name == "remnawave" else "disabled"
    assert panel_env.status_of(username) == off
    assert len(panel_env.writes()) == writes + (off == "disabled")
    assert (await shop.account(account_id)).status == off

    paid_until = utcnow() + timedelta(days=30)
    await shop.extend(subscription_id, paid_until)
    assert await shop.dispatch() == outcome(done=1)

    assert panel_env.status_of(username) == "active"
    assert panel_env.expire_of(username) == unix(paid_until)
    assert panel_env.user(username) is record  # the same panel account: never deleted and recreated
    assert (panel_env.creates(), panel_env.deletes()) == (1, 0)
    if panel_env.name == "remnawave":
        assert panel_env.devices_of(username) == ["hwid-phone"]
    stored = await shop.account(account_id)
    assert stored.status == "active"
    assert (await shop.subscription(subscription_id)).status == "active"


async def test_a_blocked_customer_is_off_on_the_panel_and_an_unblock_brings_them_back(
    shop: Shop, panel_env: PanelEnv
) -> None:
    """Staff block a paying customer (abuse): their account goes off on the panel, stays off through the panel
    sync (no drift repaired back on), and comes back with the same account when staff unblock them."""
    server = await shop.add_server(panel_env, "nl-1")
    subscription_id, account_id = await provisioned(shop, panel_env)
    username = (await shop.account(account_id)).panel_username
    user_id = (await shop.subscription(subscription_id)).user_id
    staff = Actor("staff", 1)

    async with transaction(shop.sessionmaker) as session:
        await users.block(session, staff, await session.get_one(User, user_id), "abuse")
    assert await shop.dispatch() == outcome(done=1)
    assert panel_env.status_of(username) == "disabled"
    report = await shop.reconcile(server.id)
    assert report.drift_fixed == 0 and await shop.pending() == []

    async with transaction(shop.sessionmaker) as session:
        await users.unblock(session, staff, await session.get_one(User, user_id))
    assert await shop.dispatch() == outcome(done=1)
    assert panel_env.status_of(username) == "active"
    assert (panel_env.creates(), panel_env.deletes()) == (1, 0)


async def test_subscription_ended_before_provisioning_creates_nothing(shop: Shop, panel_env: PanelEnv) -> None:
    await shop.add_server(panel_env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    await shop.end(subscription.id)

    assert await shop.dispatch() == outcome(done=2)

    assert not panel_env.has(account.panel_username)
    assert panel_env.creates() == 0
    assert (await shop.account(account.id)).status == "pending"


async def test_revoke_and_reissue_replaces_both_links(shop: Shop, panel_env: PanelEnv) -> None:
    await shop.add_server(panel_env, "nl-1")
    _, account_id = await provisioned(shop, panel_env)
    before = await shop.account(account_id)
    old_url = subscription_url(before)
    shop.travel(seconds=2)  # Marzban keeps a link minted in the revoke's own second alive (§1.3)

    await shop.revoke(account_id)

    # Our mirror token changes in the same transaction, before the panel hears of it.
    queued = await shop.account(account_id)
    assert queued.sub_token != before.sub_token
    assert [m.topic for m in await shop.pending()] == [REVOKE_TOPIC]

    assert await shop.dispatch() == outcome(done=1)

    assert panel_env.revokes() == 1
    after = await shop.account(account_id)
    assert after.sub_token == queued.sub_token
    new_url = subscription_url(after)
    assert new_url != old_url
    assert panel_env.link_user(old_url) is None
    assert panel_env.link_user(new_url) == before.panel_username
    assert panel_env.creates() == 1


async def test_revoke_before_the_account_exists_creates_then_revokes(shop: Shop, panel_env: PanelEnv) -> None:
    await shop.add_server(panel_env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    await shop.revoke(account.id)

    assert await shop.dispatch() == outcome(done=2)

    assert (panel_env.creates(), panel_env.revokes()) == (1, 1)
    stored = await shop.account(account.id)
    assert panel_env.link_user(subscription_url(stored)) == account.panel_username


async def test_reset_traffic(shop: Shop, panel_env: PanelEnv) -> None:
    await shop.add_server(panel_env, "nl-1")
    _, account_id = await provisioned(shop, panel_env)
    username = (await shop.account(account_id)).panel_username
    panel_env.record_usage(username, 3 * GIB)

    await shop.reset_traffic(account_id)
    assert await shop.dispatch() == outcome(done=1)

    user = panel_env.user(username)
    used = user.used_traffic if panel_env.name == "marzban" else user.used_traffic_bytes
    assert used == 0
    assert (await shop.account(account_id)).used_traffic_bytes == 0
    assert panel_env.status_of(username) == "active"


@pytest.mark.parametrize("version", ["0.7", "0.8"])
async def test_move_account_to_another_server(shop: Shop, open_env: EnvFactory, version: str) -> None:
    """On 0.8 the old panel answers the DELETE with 500 after deleting (§1.8); the adapter's retry then sees
    404, which counts as deleted."""
    old_env, new_env = open_env("marzban", version), open_env("marzban")
    old = await shop.add_server(old_env, "nl-1")
    _, account_id = await provisioned(shop, old_env)
    new = await shop.add_server(new_env, "de-1", location="de")
    before = await shop.account(account_id)
    assert before.server_id == old.id
    username = before.panel_username

    await shop.move(account_id, new.id)

    assert [m.topic for m in await shop.pending()] == [SYNC_TOPIC, DELETE_TOPIC]
    assert await shop.dispatch() == outcome(done=2)

    assert new_env.has(username) and not old_env.has(username)
    assert (new_env.creates(), old_env.deletes()) == (1, 1 if version == "0.7" else 2)
    after = await shop.account(account_id)
    assert (after.server_id, after.status, after.sub_token) == (new.id, "active", before.sub_token)
    assert new_env.link_user(subscription_url(after)) == username


async def test_move_account_on_remnawave(shop: Shop, open_env: EnvFactory) -> None:
    old_env, new_env = open_env("remnawave"), open_env("remnawave")
    await shop.add_server(old_env, "nl-1")
    _, account_id = await provisioned(shop, old_env)
    new = await shop.add_server(new_env, "de-1", location="de")
    before = await shop.account(account_id)

    await shop.move(account_id, new.id)
    assert await shop.dispatch() == outcome(done=2)

    username = before.panel_username
    assert new_env.has(username) and not old_env.has(username)
    assert (new_env.creates(), old_env.deletes()) == (1, 1)
    after = await shop.account(account_id)
    assert after.server_id == new.id and after.sub_token == before.sub_token
    assert after.panel_id == new_env.panel_id_of(username)
    assert new_env.link_user(subscription_url(after)) == username


async def test_delete_account_removes_it_from_the_panel_and_from_us(shop: Shop, open_env: EnvFactory) -> None:
    env = open_env("marzban", "0.8")  # 0.8 answers a successful DELETE with 500 (§1.8)
    await shop.add_server(env, "nl-1")
    _, account_id = await provisioned(shop, env)
    username = (await shop.account(account_id)).panel_username

    await shop.delete(account_id)

    assert await shop.account_or_none(account_id) is None
    assert await shop.dispatch() == outcome(done=1)
    assert not env.has(username)
    assert env.deletes() == 2  # the 500 after deleting, then the retry's 404


async def test_a_device_limit_is_kept_only_where_the_panel_enforces_it(shop: Shop, open_env: EnvFactory) -> None:
    """Marzban cannot limit devices: its accounts carry no limit (so /api/me and the pages promise none) and a
    user there is sold none; on Remnawave the plan's limit holds."""
    await shop.add_server(open_env("marzban"), "mz", location="de")
    await shop.add_server(open_env("remnawave"), "rw", location="nl")
    on_marzban = await shop.ensure((await shop.add_subscription(1001)).id, location="de", device_limit=3)
    on_remnawave = await shop.ensure((await shop.add_subscription(1002)).id, location="nl", device_limit=3)

    assert (on_marzban.device_limit, on_remnawave.device_limit) == (None, 3)
    async with shop.sessionmaker() as session:
        assert not await device_limits_enforced(session, on_marzban.user_id)
        assert await device_limits_enforced(session, on_remnawave.user_id)
        assert not await device_limits_enforced(session, 999)  # no account yet: it may land on Marzban
    assert await shop.dispatch() == outcome(done=2)
    assert open_env.opened[1].limits_of(on_remnawave.panel_username) == (None, 3)
