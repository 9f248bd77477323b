"""A panel that is down for a while: queued operations wait, in order, and complete exactly once when it returns
(SPEC §5.3, §6.5 — "a panel outage never loses a paid extension")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from app.db import transaction
from app.kit.clock import utcnow
from app.models import OutboxMessage, OutboxStatus
from app.outbox import service as outbox
from app.outbox.service import MAX_BACKOFF
from app.panels.base import PanelUnavailable
from app.provisioning.service import DELETE_TOPIC, REVOKE_TOPIC, SYNC_TOPIC
from tests.provisioning.conftest import EnvFactory, PanelEnv, Shop, outcome, subscription_url, unix

GIB = 2**30
PAST_ANY_BACKOFF = MAX_BACKOFF * 1.2 + timedelta(seconds=1)  # the longest backoff, jitter included


async def test_operations_queued_while_the_panel_is_down_complete_once_it_is_back(
    shop: Shop, panel_env: PanelEnv
) -> None:
    await shop.add_server(panel_env, "nl-1")
    subscription = await shop.add_subscription(1001, days=30)
    panel_env.down()

    # A purchase and what follows it, all while the panel is unreachable.
    account = await shop.ensure(subscription.id)
    start = subscription.ends_at
    await shop.extend(subscription.id, start + timedelta(days=30))
    await shop.extend(subscription.id, start + timedelta(days=60))
    await shop.set_limits(account.id, device_limit=3, traffic_limit_bytes=100 * GIB)
    await shop.revoke(account.id)
    last_extension = start + timedelta(days=90)
    await shop.extend(subscription.id, last_extension)
    queued = await shop.messages()
    assert [m.topic for m in queued] == [SYNC_TOPIC] * 4 + [REVOKE_TOPIC, SYNC_TOPIC]

    for attempt in range(1, 4):
        assert await shop.dispatch() == outcome(retry=1)  # only the oldest of the account may run
        head, *rest = await shop.messages()
        assert (head.status, head.attempts) == (OutboxStatus.PENDING, attempt)
        assert (head.last_error or "").startswith("PanelUnavailable")
        assert all((m.status, m.attempts) == (OutboxStatus.PENDING, 0) for m in rest)
        assert await shop.dispatch() == outcome()  # nothing is due before the backoff has passed
        shop.travel(seconds=PAST_ANY_BACKOFF.total_seconds())
    assert len(await shop.pending()) == len(queued)  # nothing lost
    assert panel_env.creates() == 0
    assert (await shop.account(account.id)).status == "pending"

    panel_env.up()
    assert await shop.dispatch() == outcome(done=len(queued))

    messages = await shop.messages()
    assert [m.id for m in messages] == [m.id for m in queued]
    assert all(m.status == OutboxStatus.DONE and m.last_error is None for m in messages)
    # The head took 4 attempts, every later message exactly one: none ran before the one ahead of it was done.
    assert [m.attempts for m in messages] == [4, 1, 1, 1, 1, 1]
    assert panel_env.creates() == 1
    assert panel_env.revokes() == 1
    username = account.panel_username
    assert panel_env.expire_of(username) == unix(last_extension)
    assert panel_env.status_of(username) == "active"
    stored = await shop.account(account.id)
    assert stored.status == "active"
    assert panel_env.link_user(subscription_url(stored)) == username  # the link after the revoke
    # The panel saw the create (already with the final state) and then the revoke: nothing else, in order.
    assert panel_env.writes() == [panel_env.create_route, panel_env.revoke_route]
    assert await shop.dispatch() == outcome()


async def test_an_outage_of_one_panel_does_not_hold_up_another(shop: Shop, open_env: EnvFactory) -> None:
    down_env, up_env = open_env("marzban"), open_env("remnawave")
    await shop.add_server(down_env, "nl-1", capacity=1)
    await shop.add_server(up_env, "de-1", location="de", capacity=1)
    first, second = await shop.add_subscription(1001), await shop.add_subscription(1002)
    down_env.down()
    stuck = await shop.ensure(first.id)  # placed on nl-1, the emptiest server
    served = await shop.ensure(second.id)  # nl-1 is full: de-1

    assert await shop.dispatch() == outcome(done=1, retry=1)

    assert up_env.has(served.panel_username)
    assert (await shop.account(served.id)).status == "active"
    assert (await shop.account(stuck.id)).status == "pending"
    down_env.up()
    shop.travel(seconds=5)
    assert await shop.dispatch() == outcome(done=1)
    assert down_env.has(stuck.panel_username)


async def test_moving_off_a_dead_server_does_not_hold_up_the_account(shop: Shop, open_env: EnvFactory) -> None:
    """The usual reason to move users is that their server died. The account must work on the new server at
    once, and later changes (a renewal) must reach it, while the old server's delete waits for that server."""
    old_env, new_env = open_env("marzban"), open_env("marzban")
    await shop.add_server(old_env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    assert await shop.dispatch() == outcome(done=1)
    new = await shop.add_server(new_env, "de-1", location="de")
    old_env.down()

    await shop.move(account.id, new.id)
    assert await shop.dispatch() == outcome(done=1, retry=1)  # created on de-1; the delete on nl-1 waits
    assert new_env.has(account.panel_username)

    renewed_until = utcnow() + timedelta(days=60)
    await shop.extend(subscription.id, renewed_until)
    shop.travel(seconds=5)
    await shop.dispatch()

    assert new_env.expire_of(account.panel_username) == unix(renewed_until)
    [waiting] = await shop.pending()
    assert waiting.topic == DELETE_TOPIC and waiting.attempts == 2

    old_env.up()
    shop.travel(seconds=PAST_ANY_BACKOFF.total_seconds())
    assert await shop.dispatch() == outcome(done=1)
    assert not old_env.has(account.panel_username)
    assert new_env.has(account.panel_username)


async def test_moving_to_a_dead_server_keeps_the_old_account_until_the_new_one_exists(
    shop: Shop, open_env: EnvFactory
) -> None:
    """Created there, then deleted from the old one: the user is never left without an account."""
    old_env, new_env = open_env("marzban"), open_env("marzban")
    await shop.add_server(old_env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    assert await shop.dispatch() == outcome(done=1)
    new = await shop.add_server(new_env, "de-1", location="de")
    new_env.down()

    await shop.move(account.id, new.id)
    for _ in range(3):
        await shop.dispatch()
        shop.travel(seconds=PAST_ANY_BACKOFF.total_seconds())

    assert old_env.has(account.panel_username)
    assert old_env.deletes() == 0
    assert not new_env.has(account.panel_username)

    new_env.up()
    await shop.dispatch()
    shop.travel(seconds=PAST_ANY_BACKOFF.total_seconds())
    await shop.dispatch()

    assert await shop.pending() == []
    assert new_env.has(account.panel_username) and not old_env.has(account.panel_username)
    assert (await shop.account(account.id)).server_id == new.id


async def test_moving_back_before_the_old_delete_ran_keeps_the_account(shop: Shop, open_env: EnvFactory) -> None:
    """Moved nl-1 → de-1 while nl-1 was down, then back to nl-1: the stale delete of nl-1 must not remove the
    account the user now has there."""
    nl_env, de_env = open_env("marzban"), open_env("marzban")
    nl = await shop.add_server(nl_env, "nl-1")
    subscription = await shop.add_subscription(1001)
    account = await shop.ensure(subscription.id)
    assert await shop.dispatch() == outcome(done=1)
    original = nl_env.user(account.panel_username)
    de = await shop.add_server(de_env, "de-1", location="de")
    nl_env.down()
    await shop.move(account.id, de.id)
    await shop.dispatch()

    nl_env.up()
    await shop.move(account.id, nl.id)
    shop.travel(seconds=PAST_ANY_BACKOFF.total_seconds())
    await shop.dispatch()
    shop.travel(seconds=PAST_ANY_BACKOFF.total_seconds())
    await shop.dispatch()

    assert await shop.pending() == []
    username = account.panel_username
    assert nl_env.has(username) and not de_env.has(username)
    assert nl_env.user(username) is original  # spared, not deleted and created again
    assert (nl_env.deletes(), nl_env.creates(), de_env.deletes()) == (0, 1, 1)
    stored = await shop.account(account.id)
    assert (stored.server_id, stored.status) == (nl.id, "active")
    assert nl_env.link_user(subscription_url(stored)) == username


@outbox.handler("test.always_down", max_attempts=5000)
async def always_down(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    raise PanelUnavailable("still down")


async def test_retry_delay_stays_capped_however_long_the_outage(shop: Shop) -> None:
    """A topic may allow more attempts than the default (1000): past attempt 1023, 2**attempts no longer fits in
    a float, and the backoff must still be the cap rather than an OverflowError escaping the dispatcher."""
    async with transaction(shop.sessionmaker) as session:
        await outbox.add(session, "test.always_down", {})
        await session.execute(update(OutboxMessage).values(attempts=1100))

    assert await shop.dispatch() == outcome(retry=1)

    [message] = await shop.pending()
    assert message.attempts == 1101 and message.locked_until is None
    assert timedelta(0) < message.available_at - utcnow() <= MAX_BACKOFF * 1.2
