"""Pacing of everything the bot sends, so Telegram's limits are kept instead of discovered by 429s.

Each send reserves a time slot: the earliest moment that is at least one global interval after the previous
send of the bot (1/30 s by default; 1/1000 s for paid broadcasts, a separate allowance) and not inside a pause.
The caller sleeps until its slot. Slots are handed out in order, so a thousand concurrent senders still go out
evenly spaced; the reservations asked in the same turn of the event loop share one Redis round trip. A chat that
had a message less than a second ago reserves nothing: its sender is told to come back when the chat is free, so
one busy chat never holds up the others. A 429 pauses every sender of the bot: slots reserved more than
FRESH_RESERVATION before they come due are checked against the pause again then.

`MemoryPacer` is for one process (the embedded demo); `RedisPacer` is shared by all workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio import Redis

CHAT_INTERVAL = 1.0  # Telegram: avoid more than one message a second to one chat


class Pacer(Protocol):
    async def reserve(self, chat_id: int, *, paid: bool = False) -> tuple[bool, float]:
        """Take the next slot for a message to `chat_id`: (True, seconds from now until it), or (False, seconds
        until the chat is free again) without taking one."""
        ...

    async def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` from now (Telegram answered 429)."""
        ...

    async def paused_for(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        ...


# A message due within this long of its reservation goes out without asking about a pause again: the reservation
# itself saw the pause (its slot comes after any), at most this long before the send, about as long as the
# messages already on their way have been gone (a 429 reaches those anyway; each then waits the pause out and is
# sent once). Asking again for every message cost a Redis round trip each, as much of a paid broadcast's CPU as the
# Bot API request; at 30/s most of a group's slots lie further ahead and still ask.
FRESH_RESERVATION = 0.1


async def wait_turn(
    pacer: Pacer,
    chat_id: int,
    *,
    paid: bool = False,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Sleep until this message may go out."""
    while True:
        asked = clock()
        reserved, delay = await pacer.reserve(chat_id, paid=paid)
        if delay > 0:
            await sleep(delay)
        # A 429 that arrived while we slept moved everyone back: take a new slot after the pause.
        if reserved and (clock() - asked <= FRESH_RESERVATION or await pacer.paused_for() <= 0):
            return


class MemoryPacer:
    def __init__(self, rate: float, paid_rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._intervals = {False: 1.0 / rate, True: 1.0 / paid_rate}
        self._next = {False: 0.0, True: 0.0}
        self._chat_next: dict[int, float] = {}
        self._pause_until = 0.0
        self._clock = clock

    async def reserve(self, chat_id: int, *, paid: bool = False) -> tuple[bool, float]:
        now = self._clock()
        chat_free_at = self._chat_next.get(chat_id, 0.0)
        if chat_free_at > now:
            return False, chat_free_at - now
        slot = max(now, self._next[paid], self._pause_until)
        self._next[paid] = slot + self._intervals[paid]
        self._chat_next[chat_id] = slot + CHAT_INTERVAL
        if len(self._chat_next) > 10_000:
            self._chat_next = {chat: due for chat, due in self._chat_next.items() if due > now}
        return True, slot - now

    async def pause(self, seconds: float) -> None:
        self._pause_until = max(self._pause_until, self._clock() + seconds)

    async def paused_for(self) -> float:
        return max(0.0, self._pause_until - self._clock())


# Times are milliseconds on the Redis server's clock, so every worker shares one timeline. One call reserves for
# every chat in KEYS[3..] in order, as the same number of single reservations would (a chat named twice finds
# itself busy the second time): KEYS[1] is the allowance's next free slot, KEYS[2] the pause.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local chat_interval = tonumber(ARGV[2])
local next_slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or 0), tonumber(redis.call('GET', KEYS[2]) or 0))
local taken = false
local answers = {}
for i = 3, #KEYS do
  local chat_free_at = tonumber(redis.call('GET', KEYS[i]) or 0)
  if chat_free_at > now then
    answers[#answers + 1] = 0
    answers[#answers + 1] = tostring(chat_free_at - now)
  else
    local chat_next = next_slot + chat_interval
    redis.call('SET', KEYS[i], tostring(chat_next), 'PX', math.ceil(chat_next - now) + 1000)
    answers[#answers + 1] = 1
    answers[#answers + 1] = tostring(next_slot - now)
    next_slot = next_slot + interval
    taken = true
  end
end
if taken then
  redis.call('SET', KEYS[1], tostring(next_slot), 'PX', math.ceil(next_slot - now) + 60000)
end
return answers
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local until_ms = now + tonumber(ARGV[1])
if until_ms > tonumber(redis.call('GET', KEYS[1]) or 0) then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', math.ceil(tonumber(ARGV[1])) + 1000)
end
return 1
"""

_PAUSED_FOR = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
return tostring(math.max(0, tonumber(redis.call('GET', KEYS[1]) or 0) - now))
"""


class RedisPacer:
    def __init__(self, redis: Redis, rate: float, paid_rate: float, *, prefix: str = "tg:pace:") -> None:
        self._redis = redis
        self._intervals_ms = {False: 1000.0 / rate, True: 1000.0 / paid_rate}
        self._prefix = prefix
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._paused_for = redis.register_script(_PAUSED_FOR)
        self._waiting: dict[bool, list[tuple[int, asyncio.Future[tuple[bool, float]]]]] = {False: [], True: []}
        self._sending: set[asyncio.Task[None]] = set()

    async def reserve(self, chat_id: int, *, paid: bool = False) -> tuple[bool, float]:
        waiting = self._waiting[paid]
        if not waiting:
            # Sent once the callbacks already due in this turn of the loop have run, so every reservation asked
            # in the same turn goes in one script call: a broadcast's group asks for its fifty slots at once, one
            # round trip instead of fifty (each cost about as much of the worker's CPU as the Bot API request).
            task = asyncio.create_task(self._reserve_waiting(paid))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        future: asyncio.Future[tuple[bool, float]] = asyncio.get_running_loop().create_future()
        waiting.append((chat_id, future))
        return await future

    async def pause(self, seconds: float) -> None:
        await self._pause(keys=[f"{self._prefix}pause"], args=[seconds * 1000])

    async def paused_for(self) -> float:
        return float(await self._paused_for(keys=[f"{self._prefix}pause"])) / 1000

    async def _reserve_waiting(self, paid: bool) -> None:
        waiting, self._waiting[paid] = self._waiting[paid], []
        keys = [f"{self._prefix}{'paid' if paid else 'global'}", f"{self._prefix}pause"]
        keys += [f"{self._prefix}chat:{chat_id}" for chat_id, _ in waiting]
        try:
            answers = await self._reserve(keys=keys, args=[self._intervals_ms[paid], CHAT_INTERVAL * 1000])
        except Exception as exc:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for _, future in waiting:
                future.cancel()
            raise
        for index, (_, future) in enumerate(waiting):
            if not future.done():  # its caller was cancelled meanwhile: the slot goes unused
                future.set_result((bool(int(answers[2 * index])), float(answers[2 * index + 1]) / 1000))
