"""Both rate limiters obey the same fixed-window contract; the Redis one holds across client instances."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from app.kit.ratelimit import (
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    build_rate_limiter,
)


def fresh_prefix() -> str:
    # Other test runs may share this Redis database at the same time; their keys must not meet ours.
    return f"test-ratelimit:{uuid.uuid4().hex}:"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Advancing time differs per limiter: the memory one has an injected clock, Redis expires keys for real.
Advance = Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RateLimiter, Advance]]:
    if request.param == "memory":
        clock = ManualClock()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        yield MemoryRateLimiter(clock=clock), advance
    else:
        redis_url = request.getfixturevalue("redis_url")
        redis_limiter = RedisRateLimiter(redis_url, prefix=fresh_prefix())

        async def advance(seconds: float) -> None:
            await asyncio.sleep(seconds)

        yield redis_limiter, advance
        await redis_limiter.aclose()


async def test_allows_limit_hits_then_refuses(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, _ = limiter
    decisions = [await rl.hit("login:alice", 3, 60) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(d.retry_after == 0 for d in decisions)

    refused = await rl.hit("login:alice", 3, 60)
    assert not refused.allowed
    assert refused.remaining == 0
    assert 59 <= refused.retry_after <= 60


async def test_window_resets(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, advance = limiter
    assert (await rl.hit("k", 1, 1)).allowed
    refused = await rl.hit("k", 1, 1)
    assert not refused.allowed
    assert refused.retry_after == 1  # never 0 for a refusal, rounded up

    await advance(1.1)
    again = await rl.hit("k", 1, 1)
    assert again.allowed
    assert again.remaining == 0


async def test_refused_hits_do_not_extend_the_window(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, advance = limiter
    assert (await rl.hit("k", 1, 1)).allowed
    await advance(0.6)
    assert not (await rl.hit("k", 1, 1)).allowed
    await advance(0.5)
    assert (await rl.hit("k", 1, 1)).allowed


async def test_keys_are_independent(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, _ = limiter
    assert (await rl.hit("ip:1", 1, 60)).allowed
    assert not (await rl.hit("ip:1", 1, 60)).allowed
    assert (await rl.hit("ip:2", 1, 60)).allowed
    assert (await rl.hit("user:1", 1, 60)).allowed


async def test_zero_limit_refuses_everything(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, _ = limiter
    decision = await rl.hit("blocked", 0, 30)
    assert not decision.allowed
    assert decision.retry_after == 30


async def test_invalid_arguments_are_rejected(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, _ = limiter
    with pytest.raises(ValueError):
        await rl.hit("k", -1, 60)
    with pytest.raises(ValueError):
        await rl.hit("k", 1, 0)


async def test_several_keys_count_in_turn_as_separate_hits_would(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, _ = limiter
    both = [("ip:9", 3), ("user:9", 2)]
    first, second = await rl.hit_all(both, 60), await rl.hit_all(both, 60)
    assert first.allowed and second.allowed
    assert (first.remaining, second.remaining) == (1, 0)  # the last key decides while every key allows
    third = await rl.hit_all(both, 60)
    assert not third.allowed and third.remaining == 0 and third.retry_after >= 59  # user:9 is over its 2
    # The address was counted (3 of 3) and now refuses first: the customer's key is not counted any more.
    refused = await rl.hit_all(both, 60)
    assert not refused.allowed
    assert not (await rl.hit("ip:9", 3, 60)).allowed
    assert (await rl.hit("user:9", 4, 60)).remaining == 0  # 3 hits before, this is the 4th: not the refused one


async def test_several_keys_need_at_least_one_and_valid_limits(limiter: tuple[RateLimiter, Advance]) -> None:
    rl, _ = limiter
    with pytest.raises(ValueError):
        await rl.hit_all([], 60)
    with pytest.raises(ValueError):
        await rl.hit_all([("a", 1), ("b", -1)], 60)
    assert (await rl.hit("a", 1, 60)).allowed  # nothing was counted by the rejected calls


async def test_memory_retry_after_counts_down_with_the_clock() -> None:
    clock = ManualClock()
    rl = MemoryRateLimiter(clock=clock)
    await rl.hit("k", 1, 10)
    clock.now += 3.5
    assert (await rl.hit("k", 1, 10)).retry_after == 7  # 6.5 s left, rounded up
    clock.now += 6.5
    assert (await rl.hit("k", 1, 10)).allowed


async def test_memory_sweeps_expired_keys() -> None:
    clock = ManualClock()
    rl = MemoryRateLimiter(clock=clock)
    rl.SWEEP_AT = 5
    for i in range(5):
        await rl.hit(f"old:{i}", 1, 1)
    clock.now += 2
    await rl.hit("new", 1, 1)
    assert set(rl._windows) == {"new"}


async def test_redis_limit_is_shared_between_clients(redis_url: str) -> None:
    # Two limiters with their own connections stand for two app processes.
    prefix = fresh_prefix()
    first = RedisRateLimiter(redis_url, prefix=prefix)
    second_client = aioredis.Redis.from_url(redis_url)
    second = RedisRateLimiter(second_client, prefix=prefix)
    try:
        assert (await first.hit("login:bob", 2, 60)).allowed
        shared = await second.hit("login:bob", 2, 60)
        assert shared.allowed and shared.remaining == 0
        assert not (await first.hit("login:bob", 2, 60)).allowed
        assert not (await second.hit("login:bob", 2, 60)).allowed
    finally:
        await first.aclose()
        await second.aclose()  # does not close a client it was given
        assert await second_client.ping()
        await second_client.aclose()


async def test_redis_concurrent_hits_are_counted_exactly(redis_url: str) -> None:
    prefix = fresh_prefix()
    limiters = [RedisRateLimiter(redis_url, prefix=prefix) for _ in range(4)]
    try:
        decisions = await asyncio.gather(*(limiters[i % 4].hit("burst", 10, 60) for i in range(40)))
        assert sum(d.allowed for d in decisions) == 10
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))
    finally:
        for rl in limiters:
            await rl.aclose()


async def test_redis_key_without_ttl_gets_one(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    prefix = fresh_prefix()
    rl = RedisRateLimiter(client, prefix=prefix)
    try:
        await client.set(f"{prefix}stuck", 5)  # no TTL: must not limit forever
        decision = await rl.hit("stuck", 3, 60)
        assert not decision.allowed
        assert 0 < await client.pttl(f"{prefix}stuck") <= 60_000
    finally:
        await client.aclose()


async def test_build_rate_limiter_chooses_by_url(redis_url: str) -> None:
    assert isinstance(build_rate_limiter(""), MemoryRateLimiter)
    built = build_rate_limiter(redis_url)
    assert isinstance(built, RedisRateLimiter)
    assert (await built.hit(fresh_prefix(), 1, 5)).allowed
    await built.aclose()
