"""Pacing of everything the bot sends, so Telegram's limits are kept instead of discovered by 429s.

Each send reserves a time slot: the earliest moment that is at least one global interval after the previous
send of the bot (1/30 s by default; 1/1000 s for paid broadcasts, a separate allowance) and not inside a pause.
The caller sleeps until its slot. Slots are handed out in order, so a thousand concurrent senders still go out
evenly spaced, one reservation (one Redis round trip across processes) per message. A chat that had a message
less than a second ago reserves nothing: its sender is told to come back when the chat is free, so one busy chat
never holds up the others. A 429 pauses every sender of the bot: slots reserved before the pause are checked
again when they come due.

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


async def wait_turn(
    pacer: Pacer, chat_id: int, *, paid: bool = False, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
) -> None:
    """Sleep until this message may go out."""
    while True:
        reserved, delay = await pacer.reserve(chat_id, paid=paid)
        if delay > 0:
            await sleep(delay)
        # A 429 that arrived while we slept moved everyone back: take a new slot after the pause.
        if reserved and await pacer.paused_for() <= 0:
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


# Times are milliseconds on the Redis server's clock, so every worker shares one timeline.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local chat_free_at = tonumber(redis.call('GET', KEYS[2]) or 0)
if chat_free_at > now then
  return {0, tostring(chat_free_at - now)}
end
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or 0), tonumber(redis.call('GET', KEYS[3]) or 0))
local interval = tonumber(ARGV[1])
local chat_interval = tonumber(ARGV[2])
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', math.ceil(slot + interval - now) + 60000)
redis.call('SET', KEYS[2], tostring(slot + chat_interval), 'PX', math.ceil(slot + chat_interval - now) + 1000)
return {1, tostring(slot - now)}
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

    async def reserve(self, chat_id: int, *, paid: bool = False) -> tuple[bool, float]:
        keys = [
            f"{self._prefix}{'paid' if paid else 'global'}",
            f"{self._prefix}chat:{chat_id}",
            f"{self._prefix}pause",
        ]
        reserved, delay_ms = await self._reserve(keys=keys, args=[self._intervals_ms[paid], CHAT_INTERVAL * 1000])
        return bool(int(reserved)), float(delay_ms) / 1000

    async def pause(self, seconds: float) -> None:
        await self._pause(keys=[f"{self._prefix}pause"], args=[seconds * 1000])

    async def paused_for(self) -> float:
        return float(await self._paused_for(keys=[f"{self._prefix}pause"])) / 1000
