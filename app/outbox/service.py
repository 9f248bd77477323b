"""The transactional outbox: external side effects are written as rows in the same transaction as the state
change that caused them, then dispatched by a job until done.

Handlers are registered per topic. They must be idempotent (a crash after the external call but before the
row is marked done repeats the call): panel handlers converge the panel to our stored state, message handlers
dedupe by key. Messages sharing an `ordering_key` run strictly one after another, oldest first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Text, and_, cast, event, exists, func, literal, select, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, aliased

from app.db import insert_for
from app.kit.clock import utcnow
from app.kit.errors import Conflict, NotFound
from app.kit.jobs import enqueue, renewed
from app.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]

DISPATCH_JOB = "dispatch_outbox"
MESSAGES_JOB = "dispatch_messages"
# Messages to people (Telegram, paced at about 30 a second) run in their own lane, so ten thousand reminders
# never hold up the panel account a customer has just paid for.
MESSAGE_TOPIC_PREFIX = "notify."
Lane = Literal["effects", "messages"] | None
# A claimed batch's rows are leased this long and renewed every third of it while they run, so a worker killed
# mid-dispatch frees its rows within LEASE (plus the next dispatcher tick), however long a handler takes.
LEASE = timedelta(seconds=15)
MAX_BACKOFF = timedelta(minutes=10)


@dataclass
class _Lease:
    """One claimed batch's hold on its rows: their shared `locked_until`, moved forward by each renewal, and the
    rows still running. Renewing and finishing take turns (the lock), so a finish never compares a stale value."""

    until: datetime
    running: set[int]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PermanentFailure(Exception):
    """The side effect can never succeed as asked (e.g. the panel rejects the data): stop retrying."""


@dataclass(frozen=True)
class TopicPolicy:
    handler: Handler
    # Panels may be down for hours: keep trying (backoff caps at MAX_BACKOFF) for about a week.
    max_attempts: int = 1000


_topics: dict[str, TopicPolicy] = {}


def handler(topic: str, *, max_attempts: int = 1000) -> Callable[[Handler], Handler]:
    """Register the handler of a topic: `async def handle(ctx, payload) -> None`."""

    def register(func: Handler) -> Handler:
        _topics[topic] = TopicPolicy(func, max_attempts)
        return func

    return register


async def add(
    session: AsyncSession,
    topic: str,
    payload: dict[str, Any],
    *,
    ordering_key: str | None = None,
    dedupe_key: str | None = None,
    delay: timedelta | None = None,
) -> None:
    """Queue a side effect in the caller's transaction. A `dedupe_key` already queued is silently skipped."""
    values = {
        "topic": topic,
        "payload": payload,
        "ordering_key": ordering_key,
        "dedupe_key": dedupe_key,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "available_at": utcnow() + (delay or timedelta(0)),
        "created_at": utcnow(),
    }
    statement = insert_for(session, OutboxMessage).values(**values)
    if dedupe_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
    await session.execute(statement)
    session.info["outbox_added"] = True


async def add_many(session: AsyncSession, topic: str, messages: Sequence[tuple[dict[str, Any], str]]) -> None:
    """Queue many side effects of one topic in the caller's transaction, as (payload, dedupe key) pairs, in one
    statement instead of a round trip each (a job queueing thousands); keys already queued are skipped."""
    if not messages:
        return
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        # One INSERT … SELECT FROM unnest(arrays): a third of the time of an executemany of the same rows.
        batch = (
            func.unnest(
                literal([json.dumps(payload) for payload, _ in messages], ARRAY(Text)),
                literal([dedupe_key for _, dedupe_key in messages], ARRAY(Text)),
            )
            .table_valued("payload", "dedupe_key")
            .render_derived(name="batch")
        )
        rows = select(
            literal(topic),
            cast(batch.c.payload, JSONB),
            batch.c.dedupe_key,
            literal(OutboxStatus.PENDING.value),
            literal(0),
            literal(now, OutboxMessage.available_at.type),
            literal(now, OutboxMessage.created_at.type),
        )
        columns = ["topic", "payload", "dedupe_key", "status", "attempts", "available_at", "created_at"]
        statement = postgresql.insert(OutboxMessage).from_select(columns, rows)
        await session.execute(statement.on_conflict_do_nothing(index_elements=["dedupe_key"]))
    else:
        values = [
            {
                "topic": topic,
                "payload": payload,
                "ordering_key": None,
                "dedupe_key": dedupe_key,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "available_at": now,
                "created_at": now,
            }
            for payload, dedupe_key in messages
        ]
        statement = insert_for(session, OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"])
        await session.execute(statement, values)
    session.info["outbox_added"] = True


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: 2 s, 4 s, 8 s … capped at MAX_BACKOFF."""
    # The exponent is bounded first: 2.0 ** 1024 overflows a float, and a topic may allow that many attempts.
    base = min(MAX_BACKOFF.total_seconds(), 2.0 ** min(attempts, 64))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def _in_lane(lane: Lane) -> Any:
    if lane is None:
        return true()
    is_message = OutboxMessage.topic.startswith(MESSAGE_TOPIC_PREFIX, autoescape=True)
    return is_message if lane == "messages" else ~is_message


async def _claim(sessionmaker: async_sessionmaker[AsyncSession], limit: int, lane: Lane = None) -> list[OutboxMessage]:
    """Lease up to `limit` due messages of the lane, each the oldest pending one of its ordering key."""
    now = utcnow()
    earlier = aliased(OutboxMessage)
    blocked_by_earlier = exists().where(
        and_(
            earlier.ordering_key == OutboxMessage.ordering_key,
            earlier.status == OutboxStatus.PENDING,
            earlier.id < OutboxMessage.id,
        )
    )
    claimable = and_(
        OutboxMessage.status == OutboxStatus.PENDING,
        (OutboxMessage.locked_until.is_(None)) | (OutboxMessage.locked_until < now),
    )
    async with sessionmaker() as session, session.begin():
        query = (
            select(OutboxMessage)
            .where(
                claimable,
                OutboxMessage.available_at <= now,
                _in_lane(lane),
                (OutboxMessage.ordering_key.is_(None)) | ~blocked_by_earlier,
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=OutboxMessage)
        candidates = list((await session.scalars(query)).all())
        if not candidates:
            return []
        # On SQLite the SELECT takes no lock (the driver opens its transaction at the first write), so two
        # dispatchers (the nudged one and a cron tick) can pick the same row. The lease is therefore taken by a
        # compare-and-set: only the dispatcher whose UPDATE still finds the row unleased runs it.
        leased = await session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([message.id for message in candidates]), claimable)
            .values(locked_until=now + LEASE)
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session="fetch")
        )
        ours = set(leased.all())
    return [message for message in candidates if message.id in ours]


async def _renew(sessionmaker: async_sessionmaker[AsyncSession], lease: _Lease) -> bool:
    """Extend the lease of the batch's rows still running; False when none of them is ours any more."""
    async with lease.lock:
        if not lease.running:
            return True
        until = utcnow() + LEASE
        async with sessionmaker() as session, session.begin():
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(lease.running), OutboxMessage.locked_until == lease.until)
                .values(locked_until=until)
            )
        lease.until = until
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def _finish(
    sessionmaker: async_sessionmaker[AsyncSession], message: OutboxMessage, error: BaseException | None, lease: _Lease
) -> str:
    """Record the outcome; only the lease holder may do so (the row's lease must still be ours)."""
    now = utcnow()
    policy = _topics.get(message.topic)
    attempts = message.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "locked_until": None}
    if error is None:
        values |= {"status": OutboxStatus.DONE, "done_at": now, "last_error": None}
        outcome = "done"
    elif isinstance(error, PermanentFailure) or policy is None or attempts >= policy.max_attempts:
        values |= {"status": OutboxStatus.DEAD, "last_error": _describe(error)}
        outcome = "dead"
    else:
        values |= {"available_at": now + backoff(attempts), "last_error": _describe(error)}
        outcome = "retry"
    async with lease.lock:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.id, OutboxMessage.locked_until == lease.until)
                .values(**values)
            )
        lease.running.discard(message.id)
    return outcome


def _describe(error: BaseException | None) -> str:
    return "" if error is None else f"{type(error).__name__}: {error}"[:2000]


async def _run(ctx: dict[str, Any], message: OutboxMessage, lease: _Lease) -> str:
    policy = _topics.get(message.topic)
    error: BaseException | None = None
    if policy is None:
        error = PermanentFailure(f"no handler for topic {message.topic!r}")
    else:
        try:
            await policy.handler(ctx, dict(message.payload))
        except Exception as exc:  # every failure is recorded on the row and retried or buried
            error = exc
            log.warning("outbox %s #%d failed: %s", message.topic, message.id, _describe(exc))
    return await _finish(ctx["resources"].sessionmaker, message, error, lease)


async def dispatch(
    ctx: dict[str, Any], *, lane: Lane = None, batch: int = 50, max_batches: int = 20, concurrency: int = 1
) -> dict[str, int]:
    """Run due messages of a lane (every lane when None) until none are left (or `max_batches` batches),
    `concurrency` at a time (messages of one ordering key are never in one batch); returns counts by outcome."""
    sessionmaker = ctx["resources"].sessionmaker
    counts = {"done": 0, "retry": 0, "dead": 0}
    limit = asyncio.Semaphore(concurrency)

    async def run(message: OutboxMessage, lease: _Lease) -> str:
        async with limit:
            return await _run(ctx, message, lease)

    for _ in range(max_batches):
        messages = await _claim(sessionmaker, batch, lane)
        if not messages:
            break
        # One claim gives every row of the batch the same locked_until.
        lease = _Lease(messages[0].locked_until, {message.id for message in messages})
        every = LEASE.total_seconds() / 3
        async with renewed(lambda lease=lease: _renew(sessionmaker, lease), every=every, what="an outbox lease"):
            outcomes = await asyncio.gather(*(run(message, lease) for message in messages))
        for outcome in outcomes:
            counts[outcome] += 1
    return counts


@event.listens_for(Session, "after_commit")
def _nudge_dispatcher(session: Session) -> None:
    """Start a dispatch right after a commit that queued messages, instead of waiting for the next cron tick."""
    if not session.info.pop("outbox_added", False):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # a synchronous context (migrations, scripts): the cron picks the messages up
    task = loop.create_task(_enqueue_dispatch())
    _pending_nudges.add(task)
    task.add_done_callback(_pending_nudges.discard)


_pending_nudges: set[asyncio.Task[None]] = set()


async def _enqueue_dispatch() -> None:
    try:
        # The crons' own job ids: a nudge never runs beside a scheduled dispatch of its lane.
        for job in (DISPATCH_JOB, MESSAGES_JOB):
            await enqueue(job, _job_id=f"cron:{job}")
    except Exception:  # no runner (CLI, tests) or Redis hiccup: the crons still run the dispatch
        log.debug("could not nudge the outbox dispatcher", exc_info=True)


async def retry(session: AsyncSession, message_id: int) -> tuple[OutboxMessage, dict[str, Any]]:
    """Staff's "retry now" (/admin/system): a dead or failing message becomes due at once with a fresh attempt
    budget (its last error is kept until the next outcome); the dispatcher is nudged after the commit. Returns
    the message and its state before, for the audit row. A message being run now, or already done, is refused."""
    message = await session.get(OutboxMessage, message_id, with_for_update=True)
    if message is None:
        raise NotFound("No such outbox message.")
    before = {"status": message.status.value, "attempts": message.attempts, "available_at": str(message.available_at)}
    if message.status == OutboxStatus.DONE:
        raise Conflict("This message was delivered already.", code="outbox_done")
    if message.locked_until is not None and message.locked_until > utcnow():
        raise Conflict("This message is being run right now.", code="outbox_running")
    message.status, message.attempts, message.available_at = OutboxStatus.PENDING, 0, utcnow()
    session.info["outbox_added"] = True
    return message, before
