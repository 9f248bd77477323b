"""Draining a server (SPEC §10.4): every customer moves to another emulated panel through the outbox, exactly
once even when the drain is cut off mid-way and run again, the old panel accounts are removed, and every
/sub/ link (our own token) stays the same and serves the new server's configs."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from app.audit.service import Actor
from app.db import transaction
from app.kit.field_errors import FieldInvalid
from app.models import AuditLog, OutboxMessage, Server, VpnAccount
from app.panels.placement import choose_server
from app.provisioning import drain
from app.provisioning.service import DELETE_TOPIC, SYNC_TOPIC
from tests.provisioning.conftest import EnvFactory, Shop, subscription_url

CUSTOMERS = 100
STAFF = Actor("staff", 1, "127.0.0.1", "pytest")


async def _customers(shop: Shop, count: int) -> list[int]:
    ids = []
    for n in range(count):
        subscription = await shop.add_subscription(5000 + n)
        ids.append((await shop.ensure(subscription.id)).id)
    assert (await shop.dispatch())["done"] == count
    return ids


async def _accounts(shop: Shop, ids: list[int]) -> dict[int, VpnAccount]:
    async with shop.sessionmaker() as session:
        rows = await session.scalars(select(VpnAccount).where(VpnAccount.id.in_(ids)))
        return {account.id: account for account in rows}


async def _start(shop: Shop, source_id: int, target_id: int) -> dict:
    async with transaction(shop.sessionmaker) as session:
        source = await session.get_one(Server, source_id, with_for_update=True)
        return await drain.start_drain(session, STAFF, source, target_id)


async def _topics(shop: Shop) -> Counter[str]:
    return Counter(message.topic for message in await shop.messages())


async def test_draining_moves_100_customers_exactly_once_and_keeps_their_links(
    shop: Shop, open_env: EnvFactory
) -> None:
    old_env, new_env = open_env("marzban"), open_env("remnawave")
    old = await shop.add_server(old_env, "nl-1", capacity=500)
    ids = await _customers(shop, CUSTOMERS)
    new = await shop.add_server(new_env, "de-1", location="de", capacity=500)
    before = await _accounts(shop, ids)
    assert {a.server_id for a in before.values()} == {old.id}
    usernames = {a.panel_username for a in before.values()}
    assert all(old_env.has(name) for name in usernames)

    state = await _start(shop, old.id, new.id)
    assert (state["total"], state["moved"]) == (CUSTOMERS, 0)
    # Placement is off at once: a new customer goes to the other server even though the old one has room.
    async with shop.sessionmaker() as session:
        assert (await choose_server(session)).id == new.id
        assert not (await session.get_one(Server, old.id)).accepts_new_accounts

    # The drain is cut off after its first batch (a killed worker leaves exactly its committed batches)...
    finished = await drain.drain_batches(shop.sessionmaker, old.id, state["id"], batch=30, max_batches=1)
    assert not finished
    async with shop.sessionmaker() as session:
        progress = await drain.drain_progress(session, await session.get_one(Server, old.id))
    assert progress is not None and (progress["moved"], progress["remaining"]) == (30, CUSTOMERS - 30)

    # ...then the outbox runs the drain message (the retry), and the moves it queued, until nothing is left.
    for _ in range(10):
        if not await shop.pending():
            break
        await shop.dispatch()
        shop.travel(minutes=11)  # past any backoff (the clock is frozen)
    assert await shop.pending() == []

    after = await _accounts(shop, ids)
    assert {a.server_id for a in after.values()} == {new.id}
    assert {a.id: a.sub_token for a in after.values()} == {a.id: a.sub_token for a in before.values()}
    assert {a.panel_username for a in after.values()} == usernames
    # Each customer exactly once on the new panel, none left on the old one.
    assert new_env.creates() == CUSTOMERS
    assert all(new_env.has(name) for name in usernames)
    assert not any(old_env.has(name) for name in usernames)
    topics = await _topics(shop)
    assert (topics[SYNC_TOPIC], topics[DELETE_TOPIC], topics[drain.DRAIN_TOPIC]) == (2 * CUSTOMERS, CUSTOMERS, 1)

    # The link each customer has (/sub/<our token>) is served from the stored subscription URL: the new panel's.
    panel = shop.panels.for_server(await shop.server(new.id))
    for account in after.values():
        url = subscription_url(account)
        assert new_env.link_user(url) == account.panel_username
    sample = subscription_url(next(iter(after.values())))
    links = await panel.subscription_links(sample)
    assert links  # the new panel serves this account's configs

    async with shop.sessionmaker() as session:
        done = await drain.drain_progress(session, await session.get_one(Server, old.id))
        actions = set((await session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "server"))).all())
    assert done is not None and done["finished_at"] and (done["moved"], done["remaining"]) == (CUSTOMERS, 0)
    assert done["deletes_pending"] == 0
    assert {"server.drain", "server.drain_finished"} <= actions


async def test_a_drain_run_again_moves_nobody_twice(shop: Shop, open_env: EnvFactory) -> None:
    old_env, new_env = open_env("marzban"), open_env("marzban")
    old = await shop.add_server(old_env, "nl-1")
    ids = await _customers(shop, 5)
    new = await shop.add_server(new_env, "de-1", location="de")
    state = await _start(shop, old.id, new.id)

    assert await drain.drain_batches(shop.sessionmaker, old.id, state["id"])
    # Run again after it finished (a retried outbox message, a second worker): nothing more is queued.
    assert await drain.drain_batches(shop.sessionmaker, old.id, state["id"])
    async with shop.sessionmaker() as session:
        queued_syncs = await session.scalar(
            select(func.count()).where(OutboxMessage.topic == SYNC_TOPIC, OutboxMessage.id > 0)
        )
    assert queued_syncs == 2 * 5  # the first creates, then one per moved account
    await shop.dispatch()
    shop.travel(minutes=11)
    await shop.dispatch()
    assert new_env.creates() == 5 and old_env.deletes() == 5
    assert {a.server_id for a in (await _accounts(shop, ids)).values()} == {new.id}


async def test_a_drain_is_refused_precisely_and_changes_nothing(shop: Shop, open_env: EnvFactory) -> None:
    env, small_env = open_env("marzban"), open_env("marzban")
    old = await shop.add_server(env, "nl-1")
    await _customers(shop, 3)
    small = await shop.add_server(small_env, "tiny", capacity=2)
    closed = await shop.add_server(open_env("marzban"), "closed", accepts_new_accounts=False)

    cases = [
        (old.id, "Choose another server"),
        (999999, "No such server"),
        (small.id, "tiny has room for 2 more accounts; 3 would be moved"),
        (closed.id, "closed takes no new accounts"),
    ]
    for target_id, message in cases:
        async with shop.sessionmaker() as session:
            source = await session.get_one(Server, old.id)
            try:
                await drain.start_drain(session, STAFF, source, target_id)
            except FieldInvalid as exc:
                assert exc.field == "target_id" and message in exc.message
            else:
                raise AssertionError(f"draining to {target_id} was accepted")
            await session.rollback()
    server = await shop.server(old.id)
    assert server.accepts_new_accounts and drain.drain_state(server) is None
    assert await _topics(shop) == Counter({SYNC_TOPIC: 3})
