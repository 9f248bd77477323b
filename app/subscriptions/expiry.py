"""What happens when a live subscription reaches its end date (SPEC §4.3–4.4): the renewal policy.

    trial ─────────────────────────────────────────────────────────────▶ expired ("trial")
    auto-renew off, or nothing that renews ────────────────────────────▶ expired ("expired")
    provider-side subscription ── wait up to 24 h for its webhook ─────▶ expired ("expired")
    saved method ── charge ── succeeded ─▶ extended by the payment path
                      ├── pending / provider down ─▶ look again next run (not a failure)
                      └── failed ─▶ 1st: retry in 24 h ── failed again ─▶ expired ("renewal_failed")

While a retry or a provider's renewal is awaited, `next_renewal_attempt_at` holds the moment and the account
stays enabled until then (app.provisioning.service.access_ends_at): the grace. An ended subscription keeps its
VPN account, disabled; paying again restarts the same subscription on it (app.subscriptions.activation).

Every run is safe to repeat and to run twice at once. A subscription is handled under an exclusive lock (a
PostgreSQL advisory lock, so no row lock is held while the provider is called), its state is re-read and
re-checked under a row lock before anything changes, and `charge_renewal` makes at most one payment per
subscription per day.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.db import transaction
from app.kit.clock import utcnow
from app.models import LIVE_STATUSES, Payment, PaymentStatus, Subscription, SubscriptionStatus, User
from app.notifications.service import notify_user
from app.payments.operations import RenewalResult, charge_renewal, renewal_key
from app.provisioning import service as provisioning
from app.resources import Resources
from app.subscriptions.renewal_methods import Renewal, renewal_of

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(hours=24)
PROVIDER_WAIT = timedelta(hours=24)
MAX_FAILURES = 2
BATCH = 200
# First key of the advisory locks taken here (the second is the subscription id): any constant unique in the app.
LOCK_SPACE = 0x5E4E


class Outcome(enum.StrEnum):
    ENDED = "ended"
    RENEWED = "renewed"
    RETRY_SCHEDULED = "retry_scheduled"
    WAITING = "waiting"  # for a provider-side renewal
    PENDING = "pending"  # a renewal charge the provider is still processing
    UNAVAILABLE = "unavailable"  # the provider could not be reached: not the customer's failure
    BUSY = "busy"  # another run is handling it right now
    UNCHANGED = "unchanged"  # no longer due when looked at again


def _due(now: datetime) -> ColumnElement[bool]:
    """Live subscriptions past their end date, except those whose awaited renewal is still in the future."""
    return and_(
        Subscription.status.in_(LIVE_STATUSES),
        Subscription.ends_at <= now,
        or_(Subscription.next_renewal_attempt_at.is_(None), Subscription.next_renewal_attempt_at <= now),
    )


def _is_due(subscription: Subscription, now: datetime) -> bool:
    awaited = subscription.next_renewal_attempt_at
    return subscription.status in LIVE_STATUSES and subscription.ends_at <= now and (awaited is None or awaited <= now)


async def expire_due(resources: Resources, *, batch: int = BATCH) -> dict[str, int]:
    """Apply the policy to every subscription due now; returns how many ended up in each outcome."""
    now = utcnow()
    outcomes: Counter[str] = Counter()
    after_id = 0
    while True:
        # Keyset by id: rows left as they were (pending, provider down, busy) are not met twice in one run.
        async with transaction(resources.sessionmaker) as session:
            ids = list(
                (
                    await session.scalars(
                        select(Subscription.id)
                        .where(_due(now), Subscription.id > after_id)
                        .order_by(Subscription.id)
                        .limit(batch)
                    )
                ).all()
            )
        for subscription_id in ids:
            try:
                outcomes[(await handle(resources, subscription_id, now)).value] += 1
            except Exception:
                # One subscription that cannot be handled (a provider's unexpected answer, bad data) must not stop
                # the others; it stays due and is tried again next run.
                log.exception("expiry of subscription %d failed", subscription_id)
                outcomes["error"] += 1
        if len(ids) < batch:
            return dict(outcomes)
        after_id = ids[-1]


async def handle(resources: Resources, subscription_id: int, now: datetime) -> Outcome:
    """Apply the policy to one subscription that was due at `now`."""
    async with _exclusive(resources, subscription_id) as mine:
        if not mine:
            return Outcome.BUSY
        async with transaction(resources.sessionmaker) as session:
            subscription = await _locked(session, subscription_id)
            if subscription is None or not _is_due(subscription, now):
                return Outcome.UNCHANGED
            # The day of the charge, read once: the in-flight check and the charge must agree on it.
            today = utcnow().date()
            outcome = await _settle_without_charge(session, resources, subscription, now, today)
            if outcome is not None:
                return outcome
            seen = (subscription.ends_at, subscription.renewal_failures)
        return await _renew(resources, subscription_id, now, today, seen)


async def _settle_without_charge(
    session: AsyncSession, resources: Resources, subscription: Subscription, now: datetime, today: date
) -> Outcome | None:
    """Every case but a charge of the saved method, for which it returns None."""
    if subscription.status == SubscriptionStatus.TRIAL:
        await _end(session, subscription, "trial")
        return Outcome.ENDED
    if await session.scalar(select(User.is_blocked).where(User.id == subscription.user_id)):
        # Staff blocked the customer (their VPN is off): nothing is charged for service they cannot use.
        await _end(session, subscription, "expired")
        return Outcome.ENDED
    renewal = await renewal_of(session, resources.payments, subscription.user_id) if subscription.auto_renew else None
    if renewal == Renewal.PROVIDER:
        return await _await_provider(session, subscription, now)
    if renewal != Renewal.CHARGE or subscription.plan_id is None:
        await _end(session, subscription, "expired")
        return Outcome.ENDED
    if await _earlier_charge_in_flight(session, subscription.id, today):
        return Outcome.PENDING
    return None


async def _renew(
    resources: Resources, subscription_id: int, now: datetime, today: date, seen: tuple[datetime, int]
) -> Outcome:
    """Charge the saved method (outside any transaction of ours) and apply the answer. Today's charge, if made
    already, is asked again under the same key, so the provider answers it instead of charging twice."""
    try:
        result = await charge_renewal(resources, subscription_id, attempt=today)
    except IntegrityError:
        # Another run created today's payment between our checks (only possible without the advisory lock).
        return Outcome.BUSY
    if result == RenewalResult.SUCCEEDED:
        return Outcome.RENEWED  # the payment path extended the subscription and sent the receipt
    if result == RenewalResult.PENDING:
        return Outcome.PENDING
    if result == RenewalResult.UNAVAILABLE:
        log.warning("renewal of subscription %d: the provider is unavailable; trying again next run", subscription_id)
        return Outcome.UNAVAILABLE
    async with transaction(resources.sessionmaker) as session:
        subscription = await _locked(session, subscription_id)
        # Counted once: only if nobody changed the subscription since we decided to charge it.
        if (
            subscription is None
            or not _is_due(subscription, now)
            or (subscription.ends_at, subscription.renewal_failures) != seen
        ):
            return Outcome.UNCHANGED
        reason = "no_method" if result == RenewalResult.NO_METHOD else await _failure_reason(session, subscription_id)
        return await _count_failure(session, subscription, now, reason)


async def _count_failure(session: AsyncSession, subscription: Subscription, now: datetime, reason: str) -> Outcome:
    subscription.renewal_failures += 1
    attempt = subscription.renewal_failures
    ends_at = subscription.ends_at.isoformat()
    retry_at = now + RETRY_AFTER if attempt < MAX_FAILURES else None
    audit.record(
        session,
        actor_type="system",
        actor_id=None,
        action="subscription.renewal_failed",
        entity_type="subscription",
        entity_id=subscription.id,
        before={"renewal_failures": attempt - 1},
        after={"renewal_failures": attempt, "retry_at": retry_at.isoformat() if retry_at else None, "reason": reason},
    )
    await notify_user(
        session,
        subscription.user_id,
        "renewal_failed",
        {
            "attempt": attempt,
            "retry_at": retry_at.isoformat() if retry_at else None,
            "reason": reason,
            "subscription_id": subscription.id,
        },
        dedupe_key=f"renewal_failed:{subscription.id}:{ends_at}:{attempt}",
    )
    if retry_at is None:
        await _end(session, subscription, "renewal_failed")
        return Outcome.ENDED
    subscription.next_renewal_attempt_at = retry_at
    await _sync_panel(session, subscription)  # the grace: the panel keeps the account enabled until the retry
    return Outcome.RETRY_SCHEDULED


async def _await_provider(session: AsyncSession, subscription: Subscription, now: datetime) -> Outcome:
    """A provider-side subscription renews by itself: keep the account for up to a day past the end date for
    its webhook, then end."""
    wait_until = subscription.ends_at + PROVIDER_WAIT
    if subscription.next_renewal_attempt_at is not None or wait_until <= now:
        await _end(session, subscription, "expired")
        return Outcome.ENDED
    subscription.next_renewal_attempt_at = wait_until
    audit.record(
        session,
        actor_type="system",
        actor_id=None,
        action="subscription.renewal_awaited",
        entity_type="subscription",
        entity_id=subscription.id,
        after={"until": wait_until.isoformat()},
    )
    await _sync_panel(session, subscription)
    return Outcome.WAITING


async def _end(session: AsyncSession, subscription: Subscription, reason: str) -> None:
    """End the subscription: the account is disabled (kept for the grace period), the user is told."""
    before = subscription.status.value
    ends_at = subscription.ends_at.isoformat()
    subscription.status = SubscriptionStatus.EXPIRED
    subscription.next_renewal_attempt_at = None
    audit.record(
        session,
        actor_type="system",
        actor_id=None,
        action="subscription.expired",
        entity_type="subscription",
        entity_id=subscription.id,
        before={"status": before},
        after={"status": subscription.status.value, "reason": reason, "ends_at": ends_at},
    )
    await _sync_panel(session, subscription)
    await notify_user(
        session,
        subscription.user_id,
        "subscription_ended",
        {"ends_at": ends_at, "reason": reason, "subscription_id": subscription.id},
        dedupe_key=f"subscription_ended:{subscription.id}:{ends_at}",
    )


async def _sync_panel(session: AsyncSession, subscription: Subscription) -> None:
    """Make the panel follow; a subscription without an account gets none (a new one would only be disabled)."""
    await session.flush()
    account = await provisioning.account_for(session, subscription)
    if account is not None:
        await provisioning.request_sync(session, account)


async def _locked(session: AsyncSession, subscription_id: int) -> Subscription | None:
    return await session.get(Subscription, subscription_id, with_for_update=True, populate_existing=True)


async def _earlier_charge_in_flight(session: AsyncSession, subscription_id: int, today: date) -> bool:
    """A renewal charge of an earlier day still unanswered: a new day's charge would have a new key and could
    take the money twice, so its webhook or reconciliation (which cancels it a day after it was made) decides."""
    pending = await session.scalar(
        select(Payment.id)
        .where(
            Payment.subscription_id == subscription_id,
            Payment.is_renewal,
            Payment.status == PaymentStatus.PENDING,
            Payment.idempotency_key != renewal_key(subscription_id, today),
        )
        .limit(1)
    )
    return pending is not None


async def _failure_reason(session: AsyncSession, subscription_id: int) -> str:
    reason = await session.scalar(
        select(Payment.failure_reason)
        .where(Payment.subscription_id == subscription_id, Payment.is_renewal)
        .order_by(Payment.id.desc())
        .limit(1)
    )
    return reason or "declined"


# Without PostgreSQL (the SQLite demo runs a single process) an in-process set does the advisory lock's job.
_in_flight: set[int] = set()


@asynccontextmanager
async def _exclusive(resources: Resources, subscription_id: int) -> AsyncIterator[bool]:
    """Whether this run may handle the subscription now: True for one holder at a time, across processes. The
    lock lives on its own connection, outside any transaction, and dies with it if the process does."""
    if resources.engine.dialect.name != "postgresql":
        if subscription_id in _in_flight:
            yield False
            return
        _in_flight.add(subscription_id)
        try:
            yield True
        finally:
            _in_flight.discard(subscription_id)
        return
    key = {"space": LOCK_SPACE, "id": subscription_id & 0x7FFFFFFF}
    async with resources.engine.connect() as connection:
        acquired = bool(await connection.scalar(text("SELECT pg_try_advisory_lock(:space, :id)"), key))
        await connection.commit()
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    await connection.execute(text("SELECT pg_advisory_unlock(:space, :id)"), key)
                    await connection.commit()
                except Exception:
                    # A connection still holding the lock must not go back to the pool.
                    await connection.invalidate()
                    raise
