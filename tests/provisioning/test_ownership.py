"""Issue 11 on every panel generation (Marzban 0.7 and 0.8, Remnawave 2.x and 3.x): a same-name account of
someone else is never touched, a restored backup never takes a live account of someone else, a paid period
always restores service, and turning an account off converges in one pass."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.db import transaction
from app.kit.clock import utcnow
from app.models import OutboxMessage, Plan, Server, Subscription, TrafficStrategy, User, VpnAccount
from app.notifications import handlers as _notifications  # noqa: F401 - registers the staff alert topics
from app.notifications.service import STAFF_TOPIC
from app.panels.events import UserEvent, apply_panel_event
from app.panels.ownership import MARK, find_orphans, installation_prefix, owner_mark, recent_clashes
from app.provisioning.service import RESET_TRAFFIC_TOPIC, restore_deleted
from app.subscriptions.activation import add_days
from tests.provisioning.conftest import EnvFactory, PanelEnv, Shop, outcome, subscription_url, unix

GIB = 2**30
GENERATIONS = [("marzban", "0.7"), ("marzban", "0.8"), ("remnawave", "2"), ("remnawave", "3")]


@pytest.fixture(params=GENERATIONS, ids=lambda pair: f"{pair[0]}-{pair[1]}")
def env(request: pytest.FixtureRequest, open_env: EnvFactory) -> PanelEnv:
    name, version = request.param
    return open_env(name, version)


def looks(env: PanelEnv, username: str) -> tuple[Any, ...]:
    """Everything about a panel account that a takeover would change."""
    return env.expire_of(username), env.limits_of(username), env.status_of(username), env.note_of(username)


async def settle(shop: Shop) -> dict[str, int]:
    """Dispatch until the outbox is empty (a clash adds a staff alert while it runs); the summed outcome."""
    total = outcome()
    for _ in range(5):
        done = await shop.dispatch()
        total = {key: total[key] + done[key] for key in total}
        if not await shop.pending():
            break
    return total


async def staff_alerts(shop: Shop, kind: str) -> list[dict[str, Any]]:
    return [m.payload["data"] for m in await shop.messages() if m.topic == STAFF_TOPIC and m.payload["kind"] == kind]


async def test_a_foreign_same_name_account_is_left_alone_and_ours_gets_another_name(shop: Shop, env: PanelEnv) -> None:
    server = await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001, days=3)
    account = await shop.ensure(subscription.id, traffic_limit_bytes=50 * GIB)
    name = account.panel_username
    env.add_orphan(name)  # another shop's customer (or a hand-made account) already holds the name
    theirs = looks(env, name)

    assert await settle(shop) == outcome(done=2)  # the account and the staff alert

    assert looks(env, name) == theirs  # not a single field of theirs changed
    stored = await shop.account(account.id)
    assert stored.panel_username.startswith(f"{name}_") and env.has(stored.panel_username)
    assert env.expire_of(stored.panel_username) == unix(subscription.ends_at)
    assert env.limits_of(stored.panel_username)[0] == 50 * GIB
    assert owner_mark(stored.owner_key) in (env.note_of(stored.panel_username) or "")
    assert stored.panel_id == env.panel_id_of(stored.panel_username)
    assert env.link_user(subscription_url(stored)) == stored.panel_username  # the customer's link serves ours
    [alert] = await staff_alerts(shop, "panel_name_clash")
    assert (alert["name"], alert["new_name"], alert["server"]) == (name, stored.panel_username, "nl-1")
    async with shop.sessionmaker() as session:
        [clash] = await recent_clashes(session)
    assert (clash.account_id, clash.foreign_name, clash.new_name) == (account.id, name, stored.panel_username)

    # Later passes leave theirs alone too: the sync neither takes its usage nor "repairs" it.
    env.record_usage(name, 5 * GIB)
    report = await shop.reconcile(server.id)
    assert (report.drift_fixed, report.missing_created) == (0, 0)
    assert await shop.dispatch() == outcome()
    assert looks(env, name) == theirs
    assert await shop.usage(account.id) == {}
    orphans = await find_orphans(shop.sessionmaker, server, shop.panels.for_server(server))
    assert (orphans.ours, orphans.foreign) == ([], [name])


async def test_a_foreign_account_under_our_name_is_found_by_the_sync_too(shop: Shop, env: PanelEnv) -> None:
    """Ours vanished and someone else's took the name in between: the sync does not adopt it as ours."""
    server = await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    assert await shop.dispatch() == outcome(done=1)
    name = account.panel_username
    env.remove(name)
    env.add_orphan(name)
    theirs = looks(env, name)

    report = await shop.reconcile(server.id)

    assert (report.seen, report.updated, report.clashes, report.missing_created) == (1, 0, 1, 1)
    assert await settle(shop) == outcome(done=2)
    assert looks(env, name) == theirs
    renamed = (await shop.account(account.id)).panel_username
    assert renamed != name and env.expire_of(renamed) == unix(subscription.ends_at)


async def test_a_restored_backup_never_reuses_a_live_name_of_someone_else(shop: Shop, env: PanelEnv) -> None:
    """`vpnshop restore` of an older backup brings the id sequences back: the next subscription gets the id of
    one made after the backup, whose panel account is alive and belongs to another customer now unknown to us.
    Here the restore is the deletion of what came after the backup; the reused id is given explicitly, as the
    restored sequence would give it (PostgreSQL and SQLite alike)."""
    server = await shop.add_server(env, "nl-1")
    kept = await shop.add_subscription(1001)  # in the backup
    kept_account = await shop.ensure(kept.id)
    later = await shop.add_subscription(1002)  # made after the backup
    later_account = await shop.ensure(later.id)
    assert await shop.dispatch() == outcome(done=2)
    live_name = later_account.panel_username
    theirs = looks(env, live_name)
    async with transaction(shop.sessionmaker) as session:  # the restore: the later rows are gone
        await session.delete(await session.get_one(VpnAccount, later_account.id))
        await session.delete(await session.get_one(Subscription, later.id))
        await session.delete(await session.get_one(User, later.user_id))

    now = utcnow()
    async with transaction(shop.sessionmaker) as session:
        newcomer = User(telegram_id=2002, referral_code="ref2002")
        session.add(newcomer)
        await session.flush()
        reused = Subscription(
            id=later.id, user_id=newcomer.id, status="active", starts_at=now, ends_at=now + timedelta(days=7)
        )
        session.add(reused)
    new_account = await shop.ensure(reused.id)
    assert new_account.panel_username == live_name  # the name the restored sequence leads to
    await shop.extend(kept.id, now + timedelta(days=60))  # the kept account is still ours to change

    assert await settle(shop) == outcome(done=3)

    assert looks(env, live_name) == theirs
    stored = await shop.account(new_account.id)
    assert stored.panel_username != live_name and env.expire_of(stored.panel_username) == unix(reused.ends_at)
    assert env.expire_of(kept_account.panel_username) == unix(now + timedelta(days=60))
    orphans = await find_orphans(shop.sessionmaker, server, shop.panels.for_server(server))
    assert (orphans.ours, orphans.foreign) == ([live_name], [])  # ours by prefix, for staff to clean up


async def test_an_account_made_before_marks_is_recognised_once_and_marked(shop: Shop, env: PanelEnv) -> None:
    await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    async with transaction(shop.sessionmaker) as session:  # what migration 0006 gives existing rows
        legacy = await session.get_one(VpnAccount, account.id)
        legacy.owner_key = "legacy-0123456789abcdef"
    env.add_orphan(account.panel_username)  # as the old code made it: our note without a mark
    user = env.user(account.panel_username)
    if env.kind == "marzban":
        user.note = f"vpnshop user {account.user_id} subscription {subscription.id} tg:1001"
    else:
        user.telegram_id, user.description = 1001, f"vpnshop user {account.user_id} subscription {subscription.id}"

    assert await shop.dispatch() == outcome(done=1)

    stored = await shop.account(account.id)
    assert stored.panel_username == account.panel_username  # adopted, not renamed
    assert env.note_of(stored.panel_username).startswith(owner_mark("legacy-0123456789abcdef"))
    assert env.expire_of(stored.panel_username) == unix(subscription.ends_at)


async def test_usernames_carry_the_installation_prefix(shop: Shop, env: PanelEnv) -> None:
    await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    async with shop.sessionmaker() as session:
        prefix = await installation_prefix(session)
        assert await installation_prefix(session) == prefix  # generated once, then stored
    assert prefix.startswith("vs") and prefix.endswith("_") and len(prefix) == 7
    assert account.panel_username == f"{prefix}{subscription.id:06d}"
    assert await shop.dispatch() == outcome(done=1)
    assert (env.note_of(account.panel_username) or "").startswith(MARK)


# --- a paid period ----------------------------------------------------------------------------------------------


async def pay(shop: Shop, user_id: int, plan_id: int, days: int = 30) -> Subscription:
    """What a succeeded payment does (payments.service → subscriptions.activation.add_days)."""
    async with transaction(shop.sessionmaker) as session:
        plan = await session.get_one(Plan, plan_id)
        return await add_days(session, user_id, days, plan=plan, now=utcnow())


async def add_plan(shop: Shop, *, traffic: int, strategy: TrafficStrategy = TrafficStrategy.NO_RESET) -> Plan:
    async with transaction(shop.sessionmaker) as session:
        plan = Plan(
            code=f"p{traffic}", name={"en": "Plan"}, duration_days=30, traffic_limit_bytes=traffic, device_limit=3
        )
        plan.traffic_strategy = strategy
        session.add(plan)
    return plan


async def test_a_limited_account_is_restored_by_a_payment(shop: Shop, env: PanelEnv) -> None:
    await shop.add_server(env, "nl-1")
    plan = await add_plan(shop, traffic=1 * GIB)
    subscription = await shop.add_subscription(1001)
    await pay(shop, subscription.user_id, plan.id)
    assert await shop.dispatch() == outcome(done=1)
    async with shop.sessionmaker() as session:
        account = await session.scalar(select(VpnAccount).where(VpnAccount.subscription_id == subscription.id))
    assert account is not None
    name = account.panel_username
    env.record_usage(name, 2 * GIB)
    env.advance(60)
    env.review()
    assert env.status_of(name) == "limited"

    paid = await pay(shop, subscription.user_id, plan.id)

    topics = [m.topic for m in await shop.pending()]
    assert topics[-1] == RESET_TRAFFIC_TOPIC  # through the outbox, after the sync of the new period
    assert await shop.dispatch() == outcome(done=2)
    assert env.status_of(name) == "active"
    assert env.traffic_of(name)[0] == 0
    assert env.expire_of(name) == unix(paid.ends_at)
    stored = await shop.account(account.id)
    assert (stored.status, stored.used_traffic_bytes) == ("active", 0)


async def test_the_plans_traffic_strategy_reaches_the_panel(shop: Shop, env: PanelEnv) -> None:
    await shop.add_server(env, "nl-1")
    monthly = await add_plan(shop, traffic=10 * GIB, strategy=TrafficStrategy.MONTHLY)
    fixed = await add_plan(shop, traffic=20 * GIB)
    subscription = await shop.add_subscription(1001)
    await pay(shop, subscription.user_id, monthly.id)
    assert await shop.dispatch() == outcome(done=1)
    async with shop.sessionmaker() as session:
        account = await session.scalar(select(VpnAccount).where(VpnAccount.subscription_id == subscription.id))
    assert account is not None
    assert env.traffic_of(account.panel_username)[1] == "month"

    await pay(shop, subscription.user_id, fixed.id)  # a switch of plan at the next payment
    assert await shop.dispatch() == outcome(done=2)
    assert env.traffic_of(account.panel_username)[1] == "no_reset"
    assert env.limits_of(account.panel_username)[0] == 20 * GIB


# --- turning an account off -------------------------------------------------------------------------------------


@pytest.mark.parametrize("why", ["expired", "limited"])
async def test_disable_converges_in_one_pass(shop: Shop, env: PanelEnv, why: str) -> None:
    """An expired or limited account has no access already; Remnawave would not disable it (only ACTIVE users
    can be), so asking again on every pass of the grace period would never end. Marzban disables it, once."""
    server = await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001, days=1)
    account = await shop.ensure(subscription.id, traffic_limit_bytes=1 * GIB)
    assert await shop.dispatch() == outcome(done=1)
    name = account.panel_username
    if why == "limited":
        env.record_usage(name, 2 * GIB)
    shop.travel(days=2 if why == "expired" else 0, seconds=60)
    env.review()
    assert env.status_of(name) == why
    await shop.end(subscription.id)
    writes = len(env.writes())

    assert await shop.dispatch() == outcome(done=1)
    for _ in range(3):  # sync passes during the grace period
        assert (await shop.reconcile(server.id)).drift_fixed == 0
        assert await shop.dispatch() == outcome()

    remnawave = env.name == "remnawave"
    assert len(env.writes()) == writes + (0 if remnawave else 1)
    assert env.status_of(name) == (why if remnawave else "disabled")


def _moment(value: datetime) -> int:
    return unix(value)


async def test_outbox_messages_of_a_clash_are_not_repeated(shop: Shop, env: PanelEnv) -> None:
    """Two queued changes for a clashing account rename it once, and the second uses the new name."""
    await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    env.add_orphan(account.panel_username)
    await shop.extend(subscription.id, utcnow() + timedelta(days=40))

    assert await settle(shop) == outcome(done=3)

    assert len(await staff_alerts(shop, "panel_name_clash")) == 1
    stored = await shop.account(account.id)
    assert env.expire_of(stored.panel_username) == _moment((await shop.subscription(subscription.id)).ends_at)
    async with shop.sessionmaker() as session:
        queued = (await session.scalars(select(OutboxMessage.topic))).all()
    assert queued.count(STAFF_TOPIC) == 1


# --- deleted on the panel by hand -------------------------------------------------------------------------------


async def test_an_account_deleted_on_the_panel_stays_deleted_until_staff_restore_it(shop: Shop, env: PanelEnv) -> None:
    server = await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    assert await shop.dispatch() == outcome(done=1)
    name = account.panel_username
    env.remove(name)
    async with transaction(shop.sessionmaker) as session:  # the panel's webhook (user.deleted / user_deleted)
        event = UserEvent("user.deleted", name, deleted=True)
        assert await apply_panel_event(session, await session.get_one(Server, server.id), event) == "changed"

    report = await shop.reconcile(server.id)

    assert report.missing_created == 0
    assert await settle(shop) == outcome(done=1)  # the staff alert, and no re-creation
    assert not env.has(name)
    assert [alert["name"] for alert in await staff_alerts(shop, "panel_account_deleted")] == [name]

    async with transaction(shop.sessionmaker) as session:
        await restore_deleted(session, await session.get_one(VpnAccount, account.id))
    assert await settle(shop) == outcome(done=1)
    assert env.has(name) and env.expire_of(name) == unix(subscription.ends_at)
    assert (await shop.account(account.id)).status == "active"
