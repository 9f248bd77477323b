"""Pacing: evenly spaced slots under the global rate, one second per chat, paid broadcasts on their own
allowance, and a pause moving every sender back; the same rules in memory and in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.telegram.pacing import FRESH_RESERVATION, MemoryPacer, RedisPacer, wait_turn
from tests.emulators.harness import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def pacer_factory(request, redis_url):
    clients: list[Redis] = []

    def make(rate: float = 30, paid_rate: float = 1000):
        if request.param == "memory":
            return MemoryPacer(rate, paid_rate, clock=Clock())
        client = Redis.from_url(redis_url)
        clients.append(client)
        return RedisPacer(client, rate, paid_rate, prefix=f"test:pace:{id(client)}:")

    yield make
    for client in clients:
        await client.aclose()


def _within(value: float, expected: float, elapsed: float) -> bool:
    """`value` is a delay from "now", and Redis's clock moved on by at most `elapsed` while the test ran (on a
    busy machine that is anything), so the delay may be that much shorter than planned, never longer."""
    return expected - elapsed - 0.002 <= value <= expected + 0.002


async def test_slots_to_different_chats_are_spaced_by_the_global_rate(pacer_factory) -> None:
    pacer = pacer_factory(rate=10)
    started = time.monotonic()
    delays = [(await pacer.reserve(chat))[1] for chat in range(1, 6)]
    elapsed = time.monotonic() - started
    # The first is due at once, then one every 0.1 s.
    for index, delay in enumerate(delays):
        assert _within(delay, 0.1 * index, elapsed), (delays, elapsed)


async def test_a_busy_chat_waits_without_holding_up_the_others(pacer_factory) -> None:
    pacer = pacer_factory(rate=10)
    started = time.monotonic()
    assert (await pacer.reserve(7))[0] is True
    reserved, wait = await pacer.reserve(7)
    again, next_slot = await pacer.reserve(8)
    elapsed = time.monotonic() - started
    # Told to come back in a second, and no global slot was used: chat 8 gets the very next one.
    assert reserved is False and _within(wait, 1.0, elapsed), (wait, elapsed)
    assert again is True and _within(next_slot, 0.1, elapsed), (next_slot, elapsed)


async def test_paid_broadcasts_have_their_own_faster_allowance(pacer_factory) -> None:
    pacer = pacer_factory(rate=1, paid_rate=1000)
    await pacer.reserve(1)
    await pacer.reserve(2)  # the free allowance is now a second ahead
    started = time.monotonic()
    paid = [(await pacer.reserve(chat, paid=True))[1] for chat in range(10, 15)]
    elapsed = time.monotonic() - started
    # One every millisecond, never behind the free allowance's second.
    assert all(_within(delay, 0.001 * index, elapsed) for index, delay in enumerate(paid)), (paid, elapsed)


async def test_a_pause_moves_every_later_slot_behind_it(pacer_factory) -> None:
    pacer = pacer_factory(rate=1000)
    started = time.monotonic()
    await pacer.pause(2.0)
    paused = await pacer.paused_for()
    reserved, delay = await pacer.reserve(1)
    # A shorter pause never shortens a longer one.
    await pacer.pause(0.5)
    still = await pacer.paused_for()
    elapsed = time.monotonic() - started
    assert reserved is True
    assert all(_within(value, 2.0, elapsed) for value in (paused, delay, still)), (paused, delay, still, elapsed)


async def test_wait_turn_takes_a_new_slot_when_a_pause_began_during_the_wait() -> None:
    clock = Clock()
    pacer = MemoryPacer(1, 1000, clock=clock)
    await pacer.reserve(1)  # the next global slot is a second away
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        if len(slept) == 1:
            await pacer.pause(5)  # a 429 seen by another sender meanwhile

    await wait_turn(pacer, 2, sleep=sleep, clock=clock)
    # Due after a second, but the pause (from then, 5 s) came first: it goes out exactly when the pause ends.
    assert slept[0] == pytest.approx(1.0)
    assert clock.now == pytest.approx(1000.0 + 1 + 5)
    assert await pacer.paused_for() == 0


async def test_a_message_due_right_after_its_reservation_does_not_ask_about_a_pause_again() -> None:
    clock = Clock()
    pacer = MemoryPacer(20, 1000, clock=clock)
    await pacer.reserve(1)  # the next global slot is 50 ms away, within FRESH_RESERVATION
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds
        await pacer.pause(5)  # a 429 seen by another sender meanwhile: like the messages on their way, not seen

    await wait_turn(pacer, 2, sleep=sleep, clock=clock)
    assert slept == [pytest.approx(0.05)] and FRESH_RESERVATION > 0.05
    assert clock.now == pytest.approx(1000.05)


async def test_wait_turn_waits_for_a_busy_chat_then_takes_a_slot() -> None:
    clock = Clock()
    pacer = MemoryPacer(1000, 1000, clock=clock)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    await wait_turn(pacer, 5, sleep=sleep, clock=clock)
    await wait_turn(pacer, 5, sleep=sleep, clock=clock)
    assert slept == [pytest.approx(1.0)]


async def test_a_group_reserved_at_once_gets_the_slots_single_reservations_would(pacer_factory) -> None:
    pacer = pacer_factory(rate=100)
    chats = [*range(1, 21), 5]  # chat 5 twice: the second finds it busy
    started = time.monotonic()
    answers = await asyncio.gather(*(pacer.reserve(chat) for chat in chats))
    elapsed = time.monotonic() - started
    assert [reserved for reserved, _ in answers] == [True] * 20 + [False]
    # In the order asked, one every 10 ms; the busy chat is told to come back when its second is over.
    assert all(_within(delay, 0.01 * index, elapsed) for index, (_, delay) in enumerate(answers[:20])), answers
    assert _within(answers[20][1], 0.04 + 1.0, elapsed), answers
    assert _within((await pacer.reserve(99))[1], 0.2, time.monotonic() - started)


async def test_the_redis_pacer_asks_for_a_whole_group_in_one_round_trip(redis_url: str) -> None:
    name = f"pacer-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(redis_url, client_name=name)
    pacer = RedisPacer(client, 30, 1000, prefix=f"test:pace:{name}:")
    try:
        answers = await asyncio.gather(*(pacer.reserve(chat, paid=True) for chat in range(50)))
        clients = await client.client_list()
    finally:
        await client.aclose()
    assert all(reserved for reserved, _ in answers)
    # Fifty calls one at a time would each have taken a connection of their own.
    assert [entry["name"] for entry in clients].count(name) == 1


async def test_when_redis_is_down_every_caller_of_a_group_gets_the_error() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    pacer = RedisPacer(client, 30, 1000)
    try:
        answers = await asyncio.gather(*(pacer.reserve(chat) for chat in range(3)), return_exceptions=True)
    finally:
        await client.aclose()
    assert all(isinstance(answer, RedisError) for answer in answers), answers
