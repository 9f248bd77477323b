"""Fixed-window rate limiting: in memory for a single process (the demo), in Redis across processes.

Both limiters share one semantics so behaviour does not change with the deployment: a key's window opens at
its first hit and lasts `window_seconds`; up to `limit` hits in it are allowed; later hits are refused until
the window ends (refused hits do not extend it).

When Redis cannot be reached the Redis limiter degrades to per-process counters, with a warning, instead of
failing the request: sign-in by code, reissue and diagnostics keep working, still limited in each process.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# Redis unreachable: refused, reset, timed out (OSError covers the socket-level ones redis-py lets through).
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# A limiter must not hold a request up for long when Redis hangs rather than refuses.
REDIS_TIMEOUT_SECONDS = 1.0
# While Redis is down, one warning per this many seconds (not one per request).
WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    # Whole seconds until a hit may be allowed again; 0 when this one was allowed.
    retry_after: int


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision: ...

    async def hit_all(self, limits: Sequence[tuple[str, int]], window_seconds: int) -> RateDecision:
        """One hit on each (key, limit) in turn, as consecutive `hit`s would count them, but in one round trip:
        the first key that refuses decides and the keys after it are not counted; else the last key decides."""
        ...


def _check(limit: int, window_seconds: int) -> None:
    if limit < 0:
        raise ValueError("limit must not be negative")
    if window_seconds < 1:
        raise ValueError("window_seconds must be at least 1")


def _check_all(limits: Sequence[tuple[str, int]], window_seconds: int) -> None:
    if not limits:
        raise ValueError("at least one key to count")
    for _, limit in limits:
        _check(limit, window_seconds)


def _decide(count: int, limit: int, seconds_left: float) -> RateDecision:
    allowed = count <= limit
    return RateDecision(
        allowed=allowed,
        remaining=max(0, limit - count),
        # Rounded up and at least 1: a client retrying after `retry_after` must not be refused again.
        retry_after=0 if allowed else max(1, math.ceil(seconds_left)),
    )


class MemoryRateLimiter:
    """Per-process counters; the clock (monotonic seconds) is injectable for tests."""

    # Expired windows are swept when this many keys are held, so one-off keys (IPs) do not pile up.
    SWEEP_AT = 10_000

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window end, hits)

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        return await self.hit_all([(key, limit)], window_seconds)

    async def hit_all(self, limits: Sequence[tuple[str, int]], window_seconds: int) -> RateDecision:
        _check_all(limits, window_seconds)
        for key, limit in limits:
            decision = self._hit(key, limit, window_seconds)
            if not decision.allowed:
                break
        return decision

    def _hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        now = self._clock()
        if len(self._windows) >= self.SWEEP_AT:
            self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
        ends_at, count = self._windows.get(key, (0.0, 0))
        if ends_at <= now:
            ends_at, count = now + window_seconds, 0
        count += 1
        self._windows[key] = (ends_at, count)
        return _decide(count, limit, ends_at - now)


# INCR and the expiry in one script: atomic, so concurrent processes never see a key without its TTL.
# A key found without a TTL (e.g. written by something else) gets one, instead of limiting forever.
# Several keys are counted in turn (ARGV[1] the window in ms, ARGV[1 + i] the limit of KEYS[i]); the first
# refusing key stops the count, as separate hits would have. Returns {index of the deciding key, count, ttl}.
_HIT_SCRIPT = """
for i, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    local ttl = redis.call('PTTL', key)
    if count == 1 or ttl < 0 then
        redis.call('PEXPIRE', key, ARGV[1])
        ttl = tonumber(ARGV[1])
    end
    if count > tonumber(ARGV[i + 1]) or i == #KEYS then
        return {i, count, ttl}
    end
end
"""


class RedisRateLimiter:
    """Counters in Redis, shared by every process using the same Redis and prefix; per-process counters (and a
    warning) while Redis is unreachable."""

    def __init__(
        self, redis: str | aioredis.Redis, *, prefix: str = "ratelimit:", clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(redis, str):
            self._redis = aioredis.Redis.from_url(
                redis, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
            )
            self._owns_client = True
        else:
            self._redis = redis
            self._owns_client = False
        self.prefix = prefix
        self._script = self._redis.register_script(_HIT_SCRIPT)
        self._fallback = MemoryRateLimiter(clock=clock)
        self._clock = clock
        self._warned_at: float | None = None

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        return await self.hit_all([(key, limit)], window_seconds)

    async def hit_all(self, limits: Sequence[tuple[str, int]], window_seconds: int) -> RateDecision:
        _check_all(limits, window_seconds)
        keys = [self.prefix + key for key, _ in limits]
        try:
            index, count, ttl_ms = await self._script(
                keys=keys, args=[window_seconds * 1000, *(limit for _, limit in limits)]
            )
        except UNREACHABLE as exc:
            self._warn(exc)
            return await self._fallback.hit_all(limits, window_seconds)
        self._warned_at = None
        return _decide(int(count), limits[int(index) - 1][1], int(ttl_ms) / 1000)

    def _warn(self, exc: BaseException) -> None:
        now = self._clock()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("rate limits are per process while Redis is unreachable: %s: %s", type(exc).__name__, exc)

    async def aclose(self) -> None:
        """Close the client if this limiter created it from a URL."""
        if self._owns_client:
            await self._redis.aclose()


def build_rate_limiter(redis_url: str) -> RateLimiter:
    """Redis when a URL is configured (limits hold across workers), else in memory (demo, one process)."""
    if redis_url.strip():
        return RedisRateLimiter(redis_url.strip())
    return MemoryRateLimiter()
