"""The sender against the Bot API emulator over HTTP, on both databases: everyone once in their language with the
button, blocked users failed and marked unreachable, a 429 paused then sent, no answer → unknown and never sent
again, server errors retried then given up, pause / resume / cancel, a shutdown recording what was on its way,
a dead worker's rows made unknown, and slices handing the lease on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import lease, service
from app.broadcasts.errors import BroadcastInvalid, TestSendFailed
from app.broadcasts.sender import run_broadcast
from app.broadcasts.service import Actor, Button
from app.db import transaction
from app.kit.clock import utcnow
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus, User
from tests.broadcasts.conftest import NO_ANSWER_SECONDS, Bot, bot_resources, emulator_at
from tests.broadcasts.people import audit_actions, crowd, deliveries, draft, person, reload, rows
from tests.emulators.harness import serve

CLI = Actor("cli")
COUNT = 250  # recipients of the interrupted runs


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 120.0) -> None:
    """Poll `check` until it holds; the bound is generous because a loaded CI machine is slow, and costs nothing
    when it is not."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def sent_so_far(db: AsyncSession, broadcast_id: int) -> int:
    await db.rollback()  # a fresh snapshot (SQLite keeps the old one inside a transaction)
    return int(await db.scalar(select(Broadcast.sent).where(Broadcast.id == broadcast_id)) or 0)


async def test_everyone_gets_it_once_in_their_language(db: AsyncSession, bot: Bot) -> None:
    users = await crowd(db, 20)
    opted_out = await person(db, marketing_opt_out=True)
    await db.commit()
    blocked = {users[3].telegram_id, users[4].telegram_id}
    bot.emulator.blocked_users.update(blocked)
    button = Button("https://example.com/sale", {"ru": "Купить", "en": "Buy"})
    broadcast_id = await bot.running(db, button=button)

    result = await run_broadcast(bot.resources, broadcast_id)

    assert result.outcome == "done" and result.sent == 18
    reachable = {user.telegram_id for user in users} - blocked
    assert bot.per_chat() == dict.fromkeys(reachable, 1)
    assert opted_out.telegram_id not in bot.per_chat()
    for user in users:
        if user.telegram_id in reachable:
            expected = "<b>Скидка</b> 20%" if user.language == "ru" else "<b>Sale</b> 20% off"
            assert bot.texts()[user.telegram_id] == expected
            params = bot.params()[user.telegram_id]
            label = "Купить" if user.language == "ru" else "Buy"
            assert params["reply_markup"] == {"inline_keyboard": [[{"text": label, "url": "https://example.com/sale"}]]}
            assert params["parse_mode"] == "HTML" and "allow_paid_broadcast" not in params
    stored = await reload(db, broadcast_id)
    assert stored.status == BroadcastStatus.DONE and stored.finished_at is not None
    assert (stored.total, stored.sent, stored.failed, stored.skipped, stored.unknown) == (20, 18, 2, 0, 0)
    assert stored.lease_owner is None
    by_user = await deliveries(db, broadcast_id)
    for user in users:
        delivery = by_user[user.id]
        if user.telegram_id in blocked:
            assert delivery.status == DeliveryStatus.FAILED and "blocked" in (delivery.error or "")
            assert await db.scalar(select(User.unreachable_since).where(User.id == user.id)) is not None
        else:
            assert delivery.status == DeliveryStatus.SENT and delivery.sent_at is not None
    assert (await audit_actions(db, broadcast_id))[-1] == "broadcast.done"
    assert not bot.emulator.throttled  # paced within the emulator's limits: not one 429


async def test_a_429_pauses_every_sender_then_sends_the_same_message_once(db: AsyncSession, bot: Bot) -> None:
    users = await crowd(db, 5)
    broadcast_id = await bot.running(db)
    bot.emulator.fail_next(429, retry_after=1, method="sendMessage")
    started = time.monotonic()

    assert (await run_broadcast(bot.resources, broadcast_id)).outcome == "done"

    # Telegram's retry_after plus a second, for everyone (reference §8).
    assert time.monotonic() - started >= 2.0
    assert bot.emulator.requests["sendMessage"] == 6
    assert bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1)
    stored = await reload(db, broadcast_id)
    assert (stored.sent, stored.failed, stored.unknown) == (5, 0, 0)


async def test_no_answer_means_unknown_and_the_message_is_never_sent_again(db: AsyncSession, bot: Bot) -> None:
    users = await crowd(db, 4)
    broadcast_id = await bot.running(db)
    # Telegram takes the message but the answer never comes back in time.
    await bot.impatient()
    bot.emulator.delay_next(NO_ANSWER_SECONDS, method="sendMessage")

    assert (await run_broadcast(bot.resources, broadcast_id)).outcome == "done"

    assert bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1)
    assert bot.emulator.requests["sendMessage"] == 4
    stored = await reload(db, broadcast_id)
    assert (stored.sent, stored.unknown, stored.failed) == (3, 1, 0)
    unknown = [d for d in (await deliveries(db, broadcast_id)).values() if d.status == DeliveryStatus.UNKNOWN]
    assert len(unknown) == 1 and unknown[0].attempts == 1


async def test_server_errors_are_retried_then_given_up_after_three_tries(db: AsyncSession, bot: Bot) -> None:
    await person(db, language="ru")
    await person(db, language="en")
    await db.commit()
    recovering = await bot.running(db, language="ru")
    bot.emulator.fail_next(500, times=1, method="sendMessage")
    assert (await run_broadcast(bot.resources, recovering)).outcome == "done"
    (delivery,) = (await deliveries(db, recovering)).values()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 2)

    hopeless = await bot.running(db, language="en")
    bot.emulator.fail_next(500, times=3, method="sendMessage")
    assert (await run_broadcast(bot.resources, hopeless)).outcome == "done"
    (delivery,) = (await deliveries(db, hopeless)).values()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)
    assert "500" in (delivery.error or "") or "Internal" in (delivery.error or "")
    assert len(bot.emulator.messages) == 1  # only the first broadcast's
    stored = await reload(db, hopeless)
    assert (stored.sent, stored.failed, stored.status) == (0, 1, BroadcastStatus.DONE)


@pytest.fixture
async def slow_bot(database_url: str, db: AsyncSession):
    """100 messages a second in groups of 50 (half a second each, two on their way at once): a run of COUNT takes
    two and a half seconds and can be interrupted after the first group with groups still waiting."""
    emulator = emulator_at(100)
    with serve(emulator.app) as url:
        resources = bot_resources(database_url, url, emulator.token, telegram_rate_per_second=100)
        try:
            yield Bot(emulator, resources)
        finally:
            await resources.aclose()


async def _no_rows_in_flight(db: AsyncSession, broadcast_id: int) -> None:
    assert await rows(db, BroadcastDelivery, BroadcastDelivery.status == DeliveryStatus.SENDING) == 0
    stored = await reload(db, broadcast_id)
    assert stored.lease_owner is None and stored.lease_until is None


async def test_pause_then_resume_reaches_everyone_once(db: AsyncSession, slow_bot: Bot) -> None:
    users = await crowd(db, COUNT)
    broadcast_id = await slow_bot.running(db)
    task = asyncio.create_task(run_broadcast(slow_bot.resources, broadcast_id))
    await wait_until(lambda: _at_least(db, broadcast_id, 5))
    async with transaction(slow_bot.resources.sessionmaker) as session:
        await service.pause(session, broadcast_id, CLI)

    assert (await task).outcome == "paused"
    await _no_rows_in_flight(db, broadcast_id)
    stored = await reload(db, broadcast_id)
    assert stored.status == BroadcastStatus.PAUSED and 5 <= stored.sent < COUNT
    assert len(slow_bot.emulator.messages) == stored.sent

    async with transaction(slow_bot.resources.sessionmaker) as session:
        await service.resume(session, broadcast_id, CLI)
    assert (await run_broadcast(slow_bot.resources, broadcast_id)).outcome == "done"
    assert slow_bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1), await _not_sent(db, slow_bot)
    assert (await reload(db, broadcast_id)).sent == COUNT


async def _not_sent(db: AsyncSession, bot: Bot) -> str:
    """What a failed "everyone once" assertion needs to be understood: the deliveries that were not sent and the
    emulator's refusals."""
    await db.rollback()
    found = await db.execute(
        select(
            BroadcastDelivery.user_id, BroadcastDelivery.status, BroadcastDelivery.attempts, BroadcastDelivery.error
        ).where(BroadcastDelivery.status != DeliveryStatus.SENT)
    )
    return f"not sent: {[tuple(row) for row in found]}; throttled: {dict(bot.emulator.throttled)}"


async def _at_least(db: AsyncSession, broadcast_id: int, sent: int) -> bool:
    return await sent_so_far(db, broadcast_id) >= sent


async def test_cancel_stops_and_skips_the_rest(db: AsyncSession, slow_bot: Bot) -> None:
    await crowd(db, COUNT)
    broadcast_id = await slow_bot.running(db)
    task = asyncio.create_task(run_broadcast(slow_bot.resources, broadcast_id))
    await wait_until(lambda: _at_least(db, broadcast_id, 5))
    async with transaction(slow_bot.resources.sessionmaker) as session:
        await service.cancel(session, broadcast_id, CLI)

    assert (await task).outcome == "cancelled"
    await _no_rows_in_flight(db, broadcast_id)
    stored = await reload(db, broadcast_id)
    assert stored.status == BroadcastStatus.CANCELLED
    assert stored.sent == len(slow_bot.emulator.messages) < COUNT
    assert stored.sent + stored.skipped == COUNT
    assert await rows(db, BroadcastDelivery, BroadcastDelivery.status == DeliveryStatus.SKIPPED) == stored.skipped


async def test_a_shutdown_records_what_was_on_its_way_and_the_next_run_finishes(
    db: AsyncSession, slow_bot: Bot
) -> None:
    users = await crowd(db, COUNT)
    broadcast_id = await slow_bot.running(db)
    task = asyncio.create_task(run_broadcast(slow_bot.resources, broadcast_id))
    await wait_until(lambda: _at_least(db, broadcast_id, 5))
    task.cancel()  # what arq does on SIGTERM or at job_timeout
    with pytest.raises(asyncio.CancelledError):
        await task

    await _no_rows_in_flight(db, broadcast_id)
    stored = await reload(db, broadcast_id)
    assert stored.status == BroadcastStatus.RUNNING
    assert stored.sent == len(slow_bot.emulator.messages) < COUNT  # every message that went out is recorded

    assert (await run_broadcast(slow_bot.resources, broadcast_id)).outcome == "done"
    assert slow_bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1), await _not_sent(db, slow_bot)


async def test_a_dead_workers_messages_in_flight_become_unknown_and_are_not_resent(
    db: AsyncSession, bot: Bot, freeze
) -> None:
    clock = freeze(datetime(2030, 3, 1, 12, 0, tzinfo=UTC))
    users = await crowd(db, 6)
    broadcast_id = await bot.running(db)
    # A worker took the broadcast, marked a group `sending`, and died before recording anything.
    async with transaction(bot.resources.sessionmaker) as session:
        assert await lease.take(session, broadcast_id, "dead-worker", ttl=timedelta(seconds=5), now=utcnow())
        interrupted = [users[0].id, users[1].id]
        await session.execute(
            update(BroadcastDelivery)
            .where(BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.user_id.in_(interrupted))
            .values(status=DeliveryStatus.SENDING, attempts=1)
        )

    assert (await run_broadcast(bot.resources, broadcast_id)).outcome == "busy"  # its lease has not lapsed
    assert bot.emulator.messages == []
    clock.advance(seconds=6)
    assert (await run_broadcast(bot.resources, broadcast_id)).outcome == "done"

    assert bot.per_chat() == dict.fromkeys((user.telegram_id for user in users[2:]), 1)
    by_user = await deliveries(db, broadcast_id)
    assert {by_user[user_id].status for user_id in interrupted} == {DeliveryStatus.UNKNOWN}
    stored = await reload(db, broadcast_id)
    assert (stored.total, stored.sent, stored.unknown) == (6, 4, 2)


async def test_slices_hand_the_lease_to_their_continuation(db: AsyncSession, slow_bot: Bot) -> None:
    users = await crowd(db, COUNT)
    broadcast_id = await slow_bot.running(db)

    # A slice over as soon as it starts (as on a machine too busy to send within it) still sends its first group.
    first = await run_broadcast(slow_bot.resources, broadcast_id, slice_seconds=0)
    assert first.outcome == "handover" and first.successor and 0 < first.sent < COUNT
    await _no_sending_rows(db)
    stored = await reload(db, broadcast_id)
    assert stored.lease_owner == first.successor and stored.lease_until > utcnow()
    # Nobody else may take it meanwhile; the continuation does.
    assert (await run_broadcast(slow_bot.resources, broadcast_id)).outcome == "busy"
    assert (await run_broadcast(slow_bot.resources, broadcast_id, owner=first.successor)).outcome == "done"
    assert slow_bot.per_chat() == dict.fromkeys((user.telegram_id for user in users), 1), await _not_sent(db, slow_bot)


async def _no_sending_rows(db: AsyncSession) -> None:
    await db.rollback()
    assert await rows(db, BroadcastDelivery, BroadcastDelivery.status == DeliveryStatus.SENDING) == 0


async def test_users_who_opt_out_after_the_start_are_skipped(db: AsyncSession, bot: Bot) -> None:
    users = await crowd(db, 4)
    broadcast_id = await bot.running(db)
    async with transaction(bot.resources.sessionmaker) as session:
        await lease.take(session, broadcast_id, "me", ttl=timedelta(seconds=5), now=utcnow())  # audience frozen
        await session.execute(update(User).where(User.id == users[0].id).values(marketing_opt_out=True))

    assert (await run_broadcast(bot.resources, broadcast_id, owner="me")).outcome == "done"

    assert users[0].telegram_id not in bot.per_chat() and len(bot.per_chat()) == 3
    stored = await reload(db, broadcast_id)
    assert (stored.total, stored.sent, stored.skipped) == (4, 3, 1)


async def test_a_paid_broadcast_asks_telegram_for_paid_delivery(db: AsyncSession, bot: Bot) -> None:
    await crowd(db, 2)
    broadcast_id = await bot.running(db, is_paid=True)
    assert (await run_broadcast(bot.resources, broadcast_id)).outcome == "done"
    assert [params.get("allow_paid_broadcast") for params in bot.params().values()] == [True, True]


async def test_a_test_send_goes_to_one_account_and_counts_nothing(db: AsyncSession, bot: Bot) -> None:
    await crowd(db, 3)
    staffer = await person(db, language="en", telegram_id=5550001)
    await db.commit()
    created = await service.create(db, bot.settings, draft(button=Button("web_app")), CLI)
    await db.commit()

    message = await service.send_test(
        bot.resources.sessionmaker, bot.resources.telegram, bot.settings, created.id, staffer.telegram_id, CLI
    )

    assert message.text == "<b>Sale</b> 20% off"
    assert bot.texts() == {staffer.telegram_id: "<b>Sale</b> 20% off"}
    # Someone unknown to the shop gets the default language.
    await service.send_test(bot.resources.sessionmaker, bot.resources.telegram, bot.settings, created.id, 42, CLI)
    assert bot.texts()[42] == "<b>Скидка</b> 20%"
    assert await rows(db, BroadcastDelivery) == 0
    stored = await reload(db, created.id)
    assert (stored.status, stored.sent, stored.total) == (BroadcastStatus.DRAFT, 0, 0)
    assert await audit_actions(db, created.id) == ["broadcast.created", "broadcast.test_sent", "broadcast.test_sent"]

    bot.emulator.blocked_users.add(43)
    with pytest.raises(TestSendFailed, match="did not take the test message: Forbidden: bot was blocked"):
        await service.send_test(bot.resources.sessionmaker, bot.resources.telegram, bot.settings, created.id, 43, CLI)
    await bot.impatient()
    bot.emulator.delay_next(NO_ANSWER_SECONDS, method="sendMessage")
    with pytest.raises(TestSendFailed, match="no answer from Telegram, the test message may have arrived"):
        await service.send_test(bot.resources.sessionmaker, bot.resources.telegram, bot.settings, created.id, 44, CLI)
    with pytest.raises(BroadcastInvalid, match="no bot is configured"):
        await service.send_test(bot.resources.sessionmaker, None, bot.settings, created.id, 42, CLI)
    assert len(await audit_actions(db, created.id)) == 3
