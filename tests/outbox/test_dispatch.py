"""The outbox: queued in the caller's transaction, delivered once, retried with backoff, ordered per key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import create_sessionmaker, transaction
from app.kit.clock import FrozenClock, set_clock
from app.models import OutboxMessage, OutboxStatus
from app.outbox import service as outbox

calls: list[tuple[str, Any]] = []
failures: dict[Any, list[Exception]] = {}


@outbox.handler("test.record")
async def record_call(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    pending = failures.get(payload["n"])
    if pending:
        raise pending.pop(0)
    await asyncio.sleep(0)
    calls.append(("test.record", payload["n"]))


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[FrozenClock]:
    calls.clear()
    failures.clear()
    clock = FrozenClock(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    set_clock(clock)
    yield clock
    set_clock(None)


@pytest.fixture
def ctx(engine: AsyncEngine, db) -> dict[str, Any]:  # `db` empties the tables after the test
    return {"resources": SimpleNamespace(sessionmaker=create_sessionmaker(engine))}


async def queue(ctx: dict[str, Any], *numbers: int, key: str | None = None, dedupe: str | None = None) -> None:
    async with transaction(ctx["resources"].sessionmaker) as session:
        for n in numbers:
            await outbox.add(session, "test.record", {"n": n}, ordering_key=key, dedupe_key=dedupe)


async def rows(ctx: dict[str, Any]) -> list[OutboxMessage]:
    async with ctx["resources"].sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_queued_messages_are_delivered_once(ctx: dict[str, Any]) -> None:
    await queue(ctx, 1, 2, 3)
    assert await outbox.dispatch(ctx) == {"done": 3, "retry": 0, "dead": 0}
    assert sorted(n for _, n in calls) == [1, 2, 3]
    assert await outbox.dispatch(ctx) == {"done": 0, "retry": 0, "dead": 0}
    assert [m.status for m in await rows(ctx)] == [OutboxStatus.DONE] * 3


async def test_rolled_back_transaction_queues_nothing(ctx: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError):
        async with transaction(ctx["resources"].sessionmaker) as session:
            await outbox.add(session, "test.record", {"n": 1})
            raise RuntimeError("the state change failed")
    assert await rows(ctx) == []


async def test_dedupe_key_queues_once(ctx: dict[str, Any]) -> None:
    await queue(ctx, 1, dedupe="payment:1:notify")
    await queue(ctx, 1, dedupe="payment:1:notify")
    assert len(await rows(ctx)) == 1


async def test_failure_is_retried_after_backoff(ctx: dict[str, Any], clean_state: FrozenClock) -> None:
    failures[1] = [ConnectionError("panel down"), ConnectionError("still down")]
    await queue(ctx, 1)
    assert await outbox.dispatch(ctx) == {"done": 0, "retry": 1, "dead": 0}
    [message] = await rows(ctx)
    assert message.attempts == 1 and "panel down" in (message.last_error or "")
    # Not due yet: nothing happens until the backoff has passed.
    assert await outbox.dispatch(ctx) == {"done": 0, "retry": 0, "dead": 0}
    clean_state.advance(seconds=3)
    assert await outbox.dispatch(ctx) == {"done": 0, "retry": 1, "dead": 0}
    clean_state.advance(seconds=10)
    assert await outbox.dispatch(ctx) == {"done": 1, "retry": 0, "dead": 0}
    assert calls == [("test.record", 1)]
    [message] = await rows(ctx)
    assert message.status == OutboxStatus.DONE and message.attempts == 3 and message.last_error is None


async def test_permanent_failure_and_unknown_topic_are_buried(ctx: dict[str, Any]) -> None:
    failures[1] = [outbox.PermanentFailure("rejected")]
    await queue(ctx, 1)
    async with transaction(ctx["resources"].sessionmaker) as session:
        await outbox.add(session, "test.nobody-handles-this", {})
    assert await outbox.dispatch(ctx) == {"done": 0, "retry": 0, "dead": 2}
    assert {m.status for m in await rows(ctx)} == {OutboxStatus.DEAD}


async def test_same_ordering_key_runs_in_order_and_waits_for_a_failing_head(
    ctx: dict[str, Any], clean_state: FrozenClock
) -> None:
    failures[1] = [ConnectionError("down")]
    await queue(ctx, 1, 2, 3, key="account:7")
    await queue(ctx, 10, key="account:8")
    await outbox.dispatch(ctx)
    # The head of account:7 failed, so 2 and 3 must wait; account:8 is independent.
    assert calls == [("test.record", 10)]
    clean_state.advance(seconds=5)
    await outbox.dispatch(ctx)
    assert [n for _, n in calls] == [10, 1, 2, 3]


async def test_expired_lease_is_taken_over(ctx: dict[str, Any], clean_state: FrozenClock) -> None:
    await queue(ctx, 1)
    claimed = await outbox._claim(ctx["resources"].sessionmaker, 10)
    assert len(claimed) == 1
    # The worker holding the lease died: nobody may take it before the lease ends...
    assert await outbox.dispatch(ctx) == {"done": 0, "retry": 0, "dead": 0}
    clean_state.advance(minutes=6)
    # ...and afterwards it is delivered.
    assert await outbox.dispatch(ctx) == {"done": 1, "retry": 0, "dead": 0}


async def test_concurrent_dispatchers_deliver_each_message_once(ctx: dict[str, Any]) -> None:
    # PostgreSQL: row locks (SKIP LOCKED). SQLite, whose SELECT locks nothing: the lease's compare-and-set.
    await queue(ctx, *range(200))
    results = await asyncio.gather(*(outbox.dispatch(ctx, batch=10) for _ in range(4)))
    assert sum(r["done"] for r in results) == 200
    assert sorted(n for _, n in calls) == list(range(200))
