"""Reconciliation (SPEC §6.4) and health (§6.5) against real panels: drift found by `sync_server_accounts` is
repaired through the outbox without duplicates, orphans are only reported, usage lands in `usage_daily`, and
`check_server_health` stores the panel's reachability and nodes. Also the two cron jobs that drive them."""

from __future__ import annotations

from datetime import timedelta

from app.kit.clock import utcnow
from app.provisioning.service import SYNC_TOPIC
from tasks.panels import check_panels, sync_panels
from tests.provisioning.conftest import EnvFactory, PanelEnv, Shop, outcome, subscription_url, unix

GIB = 2**30


async def provision(shop: Shop, count: int, first_telegram_id: int = 1001) -> list[tuple[int, int, str]]:
    """`count` provisioned subscriptions: (subscription id, account id, panel username) each."""
    made = []
    for telegram_id in range(first_telegram_id, first_telegram_id + count):
        subscription = await shop.add_subscription(telegram_id)
        account = await shop.ensure(subscription.id)
        made.append((subscription.id, account.id, account.panel_username))
    assert await shop.dispatch() == outcome(done=count)
    return made


async def test_reconciliation_repairs_each_kind_of_drift_once(shop: Shop, panel_env: PanelEnv) -> None:
    server = await shop.add_server(panel_env, "nl-1")
    (sub_a, _, shifted), (_, _, switched_off), (sub_c, lost_id, lost), (_, _, fine) = await provision(shop, 4)
    panel_env.set_expiry(shifted, utcnow() + timedelta(days=3))  # someone edited it on the dashboard
    panel_env.disable(switched_off)  # disabled on the panel while our subscription is active
    panel_env.remove(lost)  # deleted on the panel
    panel_env.add_orphan("stranger")  # made on the panel, unknown to us
    creates_before = panel_env.creates()

    report = await shop.reconcile(server.id)

    assert (report.seen, report.updated) == (4, 3)
    assert (report.drift_fixed, report.missing_created) == (2, 1)
    assert (report.orphans, report.orphan_names) == (1, ["stranger"])
    assert [m.topic for m in await shop.pending()] == [SYNC_TOPIC] * 3

    assert await shop.dispatch() == outcome(done=3)

    assert panel_env.expire_of(shifted) == unix((await shop.subscription(sub_a)).ends_at)
    assert panel_env.status_of(switched_off) == "active"
    assert panel_env.expire_of(lost) == unix((await shop.subscription(sub_c)).ends_at)
    assert panel_env.creates() == creates_before + 1  # the lost one, recreated once
    recreated = await shop.account(lost_id)
    assert panel_env.link_user(subscription_url(recreated)) == lost
    assert panel_env.has("stranger")  # reported, never deleted
    assert panel_env.deletes() == 0
    assert panel_env.status_of(fine) == "active"

    # The panel now matches us: a second pass finds nothing to do and queues nothing.
    again = await shop.reconcile(server.id)

    assert (again.seen, again.drift_fixed, again.missing_created) == (5, 0, 0)
    assert (again.orphans, again.orphan_names) == (1, ["stranger"])
    assert await shop.pending() == []
    assert await shop.dispatch() == outcome()
    assert panel_env.creates() == creates_before + 1


async def test_reconciliation_run_again_before_the_repairs_ran_queues_nothing_new(
    shop: Shop, panel_env: PanelEnv
) -> None:
    """Passes run every 5 minutes; a repair that has not run yet (slow outbox, a panel rejecting one update)
    must not gain another queued copy on every pass."""
    server = await shop.add_server(panel_env, "nl-1")
    [(_, _, drifted), (_, _, lost)] = await provision(shop, 2)
    panel_env.disable(drifted)
    panel_env.remove(lost)
    first = await shop.reconcile(server.id)
    assert (first.drift_fixed, first.missing_created) == (1, 1)

    await shop.reconcile(server.id)

    assert len(await shop.pending()) == 2
    assert await shop.dispatch() == outcome(done=2)
    assert panel_env.status_of(drifted) == "active" and panel_env.has(lost)


async def test_reconciliation_leaves_alone_an_account_that_should_not_exist(shop: Shop, panel_env: PanelEnv) -> None:
    """The subscription ended before its account was ever created: there is nothing to create, so "missing"
    must not queue a no-op sync for it on every pass, forever."""
    server = await shop.add_server(panel_env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    await shop.end(subscription.id)
    assert await shop.dispatch() == outcome(done=2)
    assert not panel_env.has(account.panel_username)

    report = await shop.reconcile(server.id)

    assert report.missing_created == 0
    assert await shop.pending() == []


async def test_reconciliation_disables_an_account_whose_subscription_ran_out(shop: Shop, open_env: EnvFactory) -> None:
    """Nothing told the panel (neither our expiry job nor the panel's review job has run yet): the sync notices
    the end date has passed. (Remnawave's status job runs every 30 s, so there the account is expired already:
    see test_disable_converges_in_one_pass.)"""
    panel_env = open_env("marzban")
    server = await shop.add_server(panel_env, "nl-1")
    [(_, account_id, username)] = await provision(shop, 1)
    shop.travel(days=31)

    report = await shop.reconcile(server.id)
    assert report.drift_fixed == 1
    assert await shop.dispatch() == outcome(done=1)

    assert panel_env.status_of(username) == "disabled"
    assert (await shop.account(account_id)).status == "disabled"
    assert (await shop.reconcile(server.id)).drift_fixed == 0
    assert panel_env.has(username)  # disabled, not deleted: it is revived on payment


async def test_reconciliation_is_quiet_about_device_limits_a_panel_cannot_hold(
    shop: Shop, open_env: EnvFactory
) -> None:
    """Marzban has no device limits (`supports_devices` is False, accounts read back `device_limit=None`). A plan
    with a device limit must not look like drift on every pass, queueing a sync per account every 5 minutes."""
    env = open_env("marzban")
    server = await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    await shop.ensure(subscription.id, device_limit=3)
    assert await shop.dispatch() == outcome(done=1)

    report = await shop.reconcile(server.id)

    assert report.drift_fixed == 0
    assert await shop.pending() == []


async def test_sync_with_a_device_limit_makes_no_useless_call_on_marzban(shop: Shop, open_env: EnvFactory) -> None:
    """Converging a Marzban account must not try to "fix" a device limit Marzban cannot hold."""
    env = open_env("marzban")
    await shop.add_server(env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id, device_limit=3)
    assert await shop.dispatch() == outcome(done=1)
    env.state.log.clear()  # type: ignore[attr-defined]

    await shop.set_limits(account.id, device_limit=3, traffic_limit_bytes=None)  # nothing to change
    assert await shop.dispatch() == outcome(done=1)

    assert [route for route, _ in env.state.log] == ["GET /api/user/{username}"]  # type: ignore[attr-defined]


async def test_usage_growth_lands_in_usage_daily(shop: Shop, panel_env: PanelEnv) -> None:
    server = await shop.add_server(panel_env, "nl-1")
    [(_, account_id, username), (_, idle_id, _)] = await provision(shop, 2)
    today = utcnow().date()

    panel_env.record_usage(username, 3 * GIB)
    await shop.reconcile(server.id)
    assert await shop.usage(account_id) == {today: 3 * GIB}

    panel_env.record_usage(username, GIB)
    await shop.reconcile(server.id)
    await shop.reconcile(server.id)  # no growth since: nothing added
    assert await shop.usage(account_id) == {today: 4 * GIB}

    shop.travel(days=1)
    panel_env.record_usage(username, 2 * GIB)
    await shop.reconcile(server.id)
    assert await shop.usage(account_id) == {today: 4 * GIB, today + timedelta(days=1): 2 * GIB}
    stored = await shop.account(account_id)
    assert (stored.used_traffic_bytes, stored.lifetime_traffic_bytes) == (6 * GIB, 6 * GIB)
    assert stored.online_at is not None
    assert await shop.usage(idle_id) == {}
    assert await shop.pending() == []


async def test_usage_before_a_reset_is_not_lost(shop: Shop, panel_env: PanelEnv) -> None:
    server = await shop.add_server(panel_env, "nl-1")
    [(_, account_id, username)] = await provision(shop, 1)
    panel_env.record_usage(username, 2 * GIB)
    await shop.reset_traffic(account_id)
    assert await shop.dispatch() == outcome(done=1)
    panel_env.record_usage(username, GIB)

    await shop.reconcile(server.id)

    assert await shop.usage(account_id) == {utcnow().date(): 3 * GIB}
    assert (await shop.account(account_id)).used_traffic_bytes == GIB


async def test_usage_on_the_new_server_after_a_move_is_counted(shop: Shop, open_env: EnvFactory) -> None:
    """A moved account starts a new lifetime counter on its new panel. Its traffic there must be counted,
    not swallowed until it exceeds what the account had used on the old server."""
    old_env, new_env = open_env("marzban"), open_env("marzban")
    old = await shop.add_server(old_env, "nl-1")
    [(_, account_id, username)] = await provision(shop, 1)
    old_env.record_usage(username, 5 * GIB)
    await shop.reconcile(old.id)
    new = await shop.add_server(new_env, "de-1", location="de")
    await shop.move(account_id, new.id)
    assert await shop.dispatch() == outcome(done=2)

    new_env.record_usage(username, 2 * GIB)
    await shop.reconcile(new.id)

    assert await shop.usage(account_id) == {utcnow().date(): 7 * GIB}


async def test_usage_on_an_account_recreated_after_it_vanished_is_counted(shop: Shop, panel_env: PanelEnv) -> None:
    server = await shop.add_server(panel_env, "nl-1")
    [(_, account_id, username)] = await provision(shop, 1)
    panel_env.record_usage(username, 5 * GIB)
    await shop.reconcile(server.id)
    panel_env.remove(username)
    assert (await shop.reconcile(server.id)).missing_created == 1
    assert await shop.dispatch() == outcome(done=1)

    panel_env.record_usage(username, GIB)
    await shop.reconcile(server.id)

    assert await shop.usage(account_id) == {utcnow().date(): 6 * GIB}


async def test_health_check_follows_the_panel_down_and_up(shop: Shop, panel_env: PanelEnv) -> None:
    server = await shop.add_server(panel_env, "nl-1")
    panel_env.add_node("Node-A", online=True)
    panel_env.add_node("Node-B", online=False)
    panel_env.down()

    assert await shop.check_health(server.id) is False

    down = await shop.server(server.id)
    assert down.health == "down"
    assert (down.last_error or "").startswith("PanelUnavailable")
    assert down.health_checked_at is not None
    assert await shop.nodes(server.id) == {}

    panel_env.up()
    shop.travel(minutes=1)
    assert await shop.check_health(server.id) is True

    up = await shop.server(server.id)
    assert (up.health, up.last_error, up.health_checked_at) == ("ok", None, utcnow())
    nodes = await shop.nodes(server.id)
    assert {"Node-A", "Node-B"} <= set(nodes)
    assert nodes["Node-A"].is_online and not nodes["Node-B"].is_online
    assert nodes["Node-A"].address and nodes["Node-A"].external_id != nodes["Node-B"].external_id


async def test_a_node_removed_from_the_panel_is_not_shown_online(shop: Shop, panel_env: PanelEnv) -> None:
    server = await shop.add_server(panel_env, "nl-1")
    panel_env.add_node("Node-A", online=True)
    panel_env.add_node("Node-Gone", online=True)
    assert await shop.check_health(server.id) is True
    assert (await shop.nodes(server.id))["Node-Gone"].is_online

    panel_env.remove_node("Node-Gone")
    assert await shop.check_health(server.id) is True

    gone = (await shop.nodes(server.id)).get("Node-Gone")
    assert gone is None or not gone.is_online


async def test_cron_jobs_cover_every_server_and_survive_one_that_is_down(shop: Shop, open_env: EnvFactory) -> None:
    dead_env, live_env = open_env("marzban"), open_env("remnawave")
    await shop.add_server(dead_env, "nl-1")
    live = await shop.add_server(live_env, "de-1", location="de")
    live_env.add_orphan("stranger")
    dead_env.down()
    ctx = shop.ctx

    health = await check_panels(ctx)
    reports = await sync_panels(ctx)

    assert health == {"nl-1": False, "de-1": True}
    assert set(reports) == {"nl-1", "de-1"}
    assert "error" in reports["nl-1"]
    assert (reports["de-1"]["seen"], reports["de-1"]["orphans"]) == (1, 1)
    assert (await shop.server(live.id)).health == "ok"
    # What the pass found stays on the server for the admin's servers page.
    last = (await shop.server(live.id)).settings["last_sync"]
    assert (last["seen"], last["orphans"], last["drift_fixed"]) == (1, 1, 0)
