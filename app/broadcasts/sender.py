"""Sending a broadcast: `run_broadcast(resources, broadcast_id)` sends one slice of it under the lease.

The loop claims the next pending deliveries in id order, about a second's worth at the configured rate (at most
MAX_GROUP), marking them `sending` in one commit; sends them concurrently, each paced by TelegramOutbound (global
rate, one second per chat, a 429 pausing every sender); then records the group's outcomes in one commit. A second
group is claimed while the first is still on its way, so the pacer always has the next messages queued and our
bookkeeping never shows up as a gap in the rate. Between groups the claim re-reads the status: paused or
cancelled stops the slice, and cancelled leaves the rest `skipped`.

Outcomes: sent; failed (Telegram refused the message, or the user blocked the bot: then the user is marked
unreachable); back to pending when certainly not sent (5xx, no connection, 429s that outlasted the retries),
failed after MAX_ATTEMPTS; unknown when the request may have reached Telegram (never sent again); skipped when the
user opted out or became unreachable after the start.

A slice ends after `slice_seconds` (arq kills a job after job_timeout): it hands the lease to a continuation job's
owner id and says so, and the job enqueues that continuation. A cancelled job (shutdown, SIGTERM) lets the groups
already claimed finish and records them (asyncio.shield), then gives the lease up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.broadcasts import lease
from app.broadcasts.rendering import BroadcastMessage, render
from app.broadcasts.segments import reachable
from app.broadcasts.service import skip_waiting
from app.db import transaction
from app.kit.clock import utcnow
from app.kit.jobs import renewed
from app.kit.metrics import BROADCAST_MESSAGES
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus, User
from app.resources import Resources
from app.telegram.api import NotSent, OutcomeUnknown, RecipientUnreachable, Undeliverable

log = logging.getLogger(__name__)

SLICE_SECONDS = 240.0  # well inside arq's 300 s job_timeout, with room for the last groups to settle
MAX_GROUP = 50
GROUPS_IN_FLIGHT = 2
MAX_ATTEMPTS = 3
SKIPPED_LATER = "opted out, blocked or unreachable since the start"
RETRY = "retry"  # an outcome: certainly not sent, may be tried again

SliceOutcome = Literal["done", "paused", "cancelled", "handover", "lost", "busy", "no_bot"]


@dataclass(frozen=True)
class SliceResult:
    outcome: SliceOutcome
    successor: str | None = None  # the lease owner id the continuation job must use ("handover")
    sent: int = 0


@dataclass(frozen=True)
class _Recipient:
    delivery_id: int
    user_id: int
    chat_id: int
    language: str


@dataclass(frozen=True)
class _Outcome:
    recipient: _Recipient
    status: DeliveryStatus | Literal["retry"]
    error: str | None = None
    unreachable: bool = False


@dataclass
class _Claim:
    recipients: list[_Recipient] = field(default_factory=list)
    stop: SliceOutcome | Literal["drained"] | None = None


class _LeaseLost(Exception):
    pass


async def run_broadcast(
    resources: Resources, broadcast_id: int, *, owner: str | None = None, slice_seconds: float | None = None
) -> SliceResult:
    """Send the broadcast for up to `slice_seconds` under its lease (`owner`: the id a previous slice handed it
    to). Returns how the slice ended; "busy" when another sender holds the lease."""
    if resources.telegram is None:
        log.warning("broadcast #%d not sent: no bot is configured (BOT_TOKEN)", broadcast_id)
        return SliceResult("no_bot")
    seconds = SLICE_SECONDS if slice_seconds is None else slice_seconds
    sender = _Sender(resources, broadcast_id, owner or lease.new_owner(), seconds)
    return await sender.run()


class _Sender:
    def __init__(self, resources: Resources, broadcast_id: int, owner: str, slice_seconds: float) -> None:
        assert resources.telegram is not None
        self.resources = resources
        self.telegram = resources.telegram
        self.sessionmaker = resources.sessionmaker
        self.broadcast_id = broadcast_id
        self.owner = owner
        self.ttl = timedelta(seconds=resources.settings.broadcast_lease_seconds)
        self.deadline = time.monotonic() + slice_seconds
        self.lost = False
        self.sent = 0
        self.retry_streak = 0  # groups in a row where nothing could be sent (Telegram or Redis down)
        self._messages: dict[str, BroadcastMessage] = {}
        self._broadcast: Broadcast | None = None
        self.paid = False
        self.group_size = 1
        self.cursor: int | None = None  # the last delivery id claimed

    # --- the slice ----------------------------------------------------------------------------------------

    async def run(self) -> SliceResult:
        async with transaction(self.sessionmaker) as session:
            taken = await lease.take(session, self.broadcast_id, self.owner, ttl=self.ttl, now=utcnow())
            if taken is None:
                return SliceResult("busy")
            if taken.interrupted:
                log.warning(
                    "broadcast #%d: %d messages interrupted by a stopped worker are now unknown (not resent)",
                    self.broadcast_id,
                    taken.interrupted,
                )
        self._prepare(taken.broadcast)
        beat = self.ttl.total_seconds() / 3
        async with renewed(self._renew_lease, every=beat, what=f"broadcast #{self.broadcast_id}'s lease"):
            stop = await self._send_groups()
        return await self._end(stop)

    def _prepare(self, broadcast: Broadcast) -> None:
        settings = self.resources.settings
        self._broadcast = broadcast
        self.paid = broadcast.is_paid
        rate = settings.telegram_paid_rate_per_second if self.paid else settings.telegram_rate_per_second
        # About one second's worth, so a group's bookkeeping is amortised over many messages but a pause or a
        # cancel is seen within a second or two.
        self.group_size = max(1, min(MAX_GROUP, rate))

    async def _send_groups(self) -> SliceOutcome:
        in_flight: set[asyncio.Task[None]] = set()
        claim_task: asyncio.Task[_Claim] | None = None
        try:
            while True:
                while len(in_flight) >= GROUPS_IN_FLIGHT:
                    await self._settle_one(in_flight)
                if self.lost:
                    stop: SliceOutcome = "lost"
                    break
                if time.monotonic() >= self.deadline and self.cursor is not None:
                    # Only after a first group: a slice whose start was slow (a busy database) still makes
                    # progress instead of handing over, again and again, having sent nothing.
                    stop = "handover"
                    break
                if self.retry_streak:
                    # Nothing of the last group could be sent (Telegram or Redis down): back off a little.
                    await asyncio.sleep(min(0.5 * 2.0 ** (self.retry_streak - 1), 30.0))
                claim_task = asyncio.create_task(self._claim())
                claim = await asyncio.shield(claim_task)
                claim_task = None
                if claim.recipients:
                    in_flight.add(asyncio.create_task(self._send_and_record(claim.recipients)))
                elif claim.stop == "drained":
                    if not in_flight:
                        stop = "done"
                        break
                    # Groups on their way may put deliveries back to pending: look again once they settle.
                    await self._settle_one(in_flight)
                elif claim.stop is not None:
                    stop = claim.stop
                    break
            while in_flight:
                await self._settle_one(in_flight)
            return stop
        except Exception:
            # A database failure: let the groups on their way end (their rows stay `sending` if they cannot be
            # recorded, so whoever takes over makes them `unknown`), then fail the job.
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        except asyncio.CancelledError:
            # Shutdown: what is claimed is on its way (or about to be); let it finish and be recorded, then give
            # the lease up so the job that runs next carries on at once.
            if claim_task is not None:
                claim = await claim_task
                if claim.recipients:
                    in_flight.add(asyncio.create_task(self._send_and_record(claim.recipients)))
            await asyncio.gather(*in_flight, return_exceptions=True)
            async with transaction(self.sessionmaker) as session:
                await lease.release(session, self.broadcast_id, self.owner)
            log.info("broadcast #%d: stopped by shutdown after recording the messages on their way", self.broadcast_id)
            raise

    async def _settle_one(self, in_flight: set[asyncio.Task[None]]) -> None:
        done, _ = await asyncio.shield(asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED))
        for task in done:
            in_flight.discard(task)
            task.result()

    async def _end(self, stop: SliceOutcome) -> SliceResult:
        """Settle the broadcast's state for how the slice stopped."""
        if stop == "lost":
            log.warning("broadcast #%d: lease lost to another worker; this sender stops", self.broadcast_id)
            return SliceResult("lost", sent=self.sent)
        async with transaction(self.sessionmaker) as session:
            if stop == "handover":
                successor = lease.new_owner()
                if await lease.hand_over(session, self.broadcast_id, self.owner, successor, ttl=self.ttl, now=utcnow()):
                    return SliceResult("handover", successor, sent=self.sent)
                return SliceResult("lost", sent=self.sent)
            if stop == "done" and not await self._mark_done(session):
                stop = await self._why_stopped(session)  # paused or cancelled at the last moment
            if stop == "cancelled":
                skipped = await skip_waiting(session, self.broadcast_id, "cancelled")
                await self._add_counts(session, skipped=skipped)
            await lease.release(session, self.broadcast_id, self.owner)
        return SliceResult(stop, sent=self.sent)

    async def _mark_done(self, session: AsyncSession) -> bool:
        if await lease.open_deliveries(session, self.broadcast_id):
            return False
        now = utcnow()
        result = await session.execute(
            update(Broadcast)
            .where(
                Broadcast.id == self.broadcast_id,
                Broadcast.lease_owner == self.owner,
                Broadcast.status == BroadcastStatus.RUNNING,
            )
            .values(status=BroadcastStatus.DONE, finished_at=now, lease_owner=None, lease_until=None)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        counts = (
            await session.execute(
                select(Broadcast.total, Broadcast.sent, Broadcast.failed, Broadcast.skipped, Broadcast.unknown).where(
                    Broadcast.id == self.broadcast_id
                )
            )
        ).one()
        audit.record(
            session,
            actor_type="system",
            actor_id=None,
            action="broadcast.done",
            entity_type="broadcast",
            entity_id=self.broadcast_id,
            after=dict(counts._mapping),
        )
        log.info("broadcast #%d done: %s", self.broadcast_id, dict(counts._mapping))
        return True

    async def _renew_lease(self) -> bool:
        """One beat of the lease kept while groups are sent; a lost lease stops the sending at the next group."""
        async with transaction(self.sessionmaker) as session:
            kept = await lease.renew(session, self.broadcast_id, self.owner, ttl=self.ttl, now=utcnow())
        self.lost = self.lost or not kept
        return kept

    # --- one group ----------------------------------------------------------------------------------------

    async def _claim(self) -> _Claim:
        """Renew the lease, re-read the status, and mark the next group `sending` (users who can no longer get
        marketing are skipped instead), all in one commit."""
        async with transaction(self.sessionmaker) as session:
            if not await self._renew_while_running(session):
                return _Claim(stop=await self._why_stopped(session))
            rows = await self._next_pending(session, after=self.cursor) if self.cursor is not None else []
            if not rows:
                # The first group of the slice, or past the end: deliveries put back to pending behind the cursor
                # get their next try now.
                first = await self._first_pending_id(session)
                if first is None:
                    return _Claim(stop="drained")
                rows = await self._next_pending(session, after=first - 1)
            if not rows:
                return _Claim(stop="drained")
            self.cursor = rows[-1].id
            gone = [row.id for row in rows if not row.reachable]
            claimed: set[int] = set()
            if len(gone) < len(rows):
                result = await session.execute(
                    update(BroadcastDelivery)
                    .where(
                        BroadcastDelivery.id.in_([row.id for row in rows if row.reachable]),
                        BroadcastDelivery.status == DeliveryStatus.PENDING,
                    )
                    .values(status=DeliveryStatus.SENDING, attempts=BroadcastDelivery.attempts + 1)
                    .returning(BroadcastDelivery.id)
                )
                claimed = set(result.scalars().all())
            if gone:
                result = await session.execute(
                    update(BroadcastDelivery)
                    .where(BroadcastDelivery.id.in_(gone), BroadcastDelivery.status == DeliveryStatus.PENDING)
                    .values(status=DeliveryStatus.SKIPPED, error=SKIPPED_LATER)
                )
                await self._add_counts(session, skipped=int(result.rowcount or 0))  # type: ignore[attr-defined]
            return _Claim(
                [_Recipient(row.id, row.user_id, row.telegram_id, row.language) for row in rows if row.id in claimed]
            )

    async def _first_pending_id(self, session: AsyncSession) -> int | None:
        """Where a walk starts: the broadcast's first pending delivery (deliveries of older broadcasts may fill
        the primary key before it). The subquery is fenced (OFFSET 0) so PostgreSQL reads this broadcast's
        pending rows through their index instead of walking the primary key from its start."""
        pending = (
            select(BroadcastDelivery.id)
            .where(
                BroadcastDelivery.broadcast_id == self.broadcast_id,
                BroadcastDelivery.status == DeliveryStatus.PENDING,
            )
            .offset(0)
            .subquery()
        )
        return await session.scalar(select(func.min(pending.c.id)))

    async def _next_pending(self, session: AsyncSession, *, after: int) -> list:
        # Walking on from the last claimed id lets PostgreSQL read the primary key in order instead of sorting
        # every pending delivery of the broadcast for each group.
        return list(
            (
                await session.execute(
                    select(
                        BroadcastDelivery.id,
                        BroadcastDelivery.user_id,
                        User.telegram_id,
                        User.language,
                        reachable(User).label("reachable"),
                    )
                    .join(User, User.id == BroadcastDelivery.user_id)
                    .where(
                        BroadcastDelivery.broadcast_id == self.broadcast_id,
                        BroadcastDelivery.status == DeliveryStatus.PENDING,
                        BroadcastDelivery.id > after,
                    )
                    .order_by(BroadcastDelivery.id)
                    .limit(self.group_size)
                )
            ).all()
        )

    async def _renew_while_running(self, session: AsyncSession) -> bool:
        result = await session.execute(
            update(Broadcast)
            .where(
                Broadcast.id == self.broadcast_id,
                Broadcast.lease_owner == self.owner,
                Broadcast.status == BroadcastStatus.RUNNING,
            )
            .values(lease_until=utcnow() + self.ttl)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _why_stopped(self, session: AsyncSession) -> SliceOutcome:
        row = (
            await session.execute(
                select(Broadcast.status, Broadcast.lease_owner).where(Broadcast.id == self.broadcast_id)
            )
        ).one_or_none()
        if row is None or row.lease_owner != self.owner:
            return "lost"
        if row.status == BroadcastStatus.PAUSED:
            return "paused"
        if row.status == BroadcastStatus.CANCELLED:
            return "cancelled"
        return "lost"  # done, or anything else no sender should be running for

    async def _send_and_record(self, recipients: list[_Recipient]) -> None:
        outcomes = await asyncio.gather(*(self._send_one(recipient) for recipient in recipients))
        self.retry_streak = self.retry_streak + 1 if all(o.status == RETRY for o in outcomes) else 0
        try:
            await self._record(outcomes)
        except _LeaseLost:
            self.lost = True

    async def _send_one(self, recipient: _Recipient) -> _Outcome:
        message = self._message(recipient.language)
        try:
            await self.telegram.send(recipient.chat_id, message.text, reply_markup=message.reply_markup, paid=self.paid)
        except RecipientUnreachable as exc:
            return _Outcome(recipient, DeliveryStatus.FAILED, exc.description, unreachable=True)
        except Undeliverable as exc:
            return _Outcome(recipient, DeliveryStatus.FAILED, exc.description)
        except NotSent as exc:
            return _Outcome(recipient, RETRY, exc.description)
        except OutcomeUnknown as exc:
            return _Outcome(recipient, DeliveryStatus.UNKNOWN, exc.description)
        except RedisError as exc:  # the shared pacer, before any call to Telegram
            return _Outcome(recipient, RETRY, f"pacer: {type(exc).__name__}: {exc}")
        except Exception as exc:
            # Anything else may have happened after the request left: not knowing, we never send it again.
            log.exception("broadcast #%d: unexpected error sending to user %d", self.broadcast_id, recipient.user_id)
            return _Outcome(recipient, DeliveryStatus.UNKNOWN, f"{type(exc).__name__}: {exc}")
        return _Outcome(recipient, DeliveryStatus.SENT)

    def _message(self, language: str) -> BroadcastMessage:
        if language not in self._messages:
            assert self._broadcast is not None
            self._messages[language] = render(self._broadcast, language, self.resources.settings)
        return self._messages[language]

    async def _record(self, outcomes: Sequence[_Outcome]) -> None:
        """The group's outcomes and the broadcast's counts in one commit, only while the lease is ours (a worker
        that took over has already made these deliveries `unknown`)."""
        now = utcnow()
        async with transaction(self.sessionmaker) as session:
            if not await lease.renew(session, self.broadcast_id, self.owner, ttl=self.ttl, now=now):
                raise _LeaseLost
            by_status: dict[tuple[str, str | None], list[int]] = defaultdict(list)
            for outcome in outcomes:
                by_status[(outcome.status, outcome.error)].append(outcome.recipient.delivery_id)
            counts = {"sent": 0, "failed": 0, "unknown": 0}
            for (status, error), ids in by_status.items():
                sending = (BroadcastDelivery.id.in_(ids), BroadcastDelivery.status == DeliveryStatus.SENDING)
                if status == RETRY:
                    await session.execute(
                        update(BroadcastDelivery)
                        .where(*sending, BroadcastDelivery.attempts < MAX_ATTEMPTS)
                        .values(status=DeliveryStatus.PENDING, error=error)
                    )
                    status = DeliveryStatus.FAILED  # the rest have had their last try
                values: dict[str, object] = {"status": status, "error": error}
                if status == DeliveryStatus.SENT:
                    values["sent_at"] = now
                result = await session.execute(update(BroadcastDelivery).where(*sending).values(**values))
                counts[str(status)] += int(result.rowcount or 0)  # type: ignore[attr-defined]
            unreachable = [o.recipient.user_id for o in outcomes if o.unreachable]
            if unreachable:
                await session.execute(
                    update(User)
                    .where(User.id.in_(unreachable), User.unreachable_since.is_(None))
                    .values(unreachable_since=now)
                )
            await self._add_counts(session, **counts)
        self.sent += counts["sent"]
        for outcome_name, number in counts.items():
            BROADCAST_MESSAGES.labels(outcome_name).inc(number)

    async def _add_counts(self, session: AsyncSession, **counts: int) -> None:
        increments = {name: getattr(Broadcast, name) + number for name, number in counts.items() if number}
        if increments:
            await session.execute(update(Broadcast).where(Broadcast.id == self.broadcast_id).values(**increments))
