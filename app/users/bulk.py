"""Bulk actions over many customers (SPEC §10.2): a dry run first, which fixes exactly whom the action will act
on and says, per customer, whether it would change them or why not; then the real run, by a job, over exactly
that list, with progress and a report. Each customer's change goes through the same staff action as on their
page (with its audit row), in a savepoint of its own, so one failure stops neither the others nor the run.

A customer whose state changed between the dry run and the run (blocked meanwhile, say) is re-checked and
skipped with the reason, never changed blindly."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.service import Actor, record_by
from app.db import transaction
from app.kit.clock import utcnow
from app.kit.errors import AppError, Conflict, NotFound
from app.kit.field_errors import FieldInvalid
from app.models import BulkRun, JobState, SubscriptionStatus, User
from app.subscriptions import staff_actions as subscriptions
from app.subscriptions.activation import latest_subscription
from app.users import staff_actions as users

MAX_CUSTOMERS = 10_000
BATCH = 100
BULK_JOB = "run_bulk_action"
CHANGE = "change"

log = logging.getLogger(__name__)

Check = Callable[[AsyncSession, User], Awaitable[str | None]]
Apply = Callable[[AsyncSession, Actor, User, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BulkAction:
    # None: it would change this customer; otherwise why it would not.
    check: Check
    apply: Apply
    validate: Callable[[dict[str, Any]], dict[str, Any]]


async def _no_check(session: AsyncSession, user: User) -> str | None:
    return None


async def _has_subscription(session: AsyncSession, user: User) -> str | None:
    return None if await latest_subscription(session, user.id) is not None else "no subscription"


async def _cancellable(session: AsyncSession, user: User) -> str | None:
    subscription = await latest_subscription(session, user.id)
    if subscription is None:
        return "no subscription"
    return "already cancelled" if subscription.status == SubscriptionStatus.CANCELLED else None


async def _blockable(session: AsyncSession, user: User) -> str | None:
    return "already blocked" if user.is_blocked else None


async def _unblockable(session: AsyncSession, user: User) -> str | None:
    return None if user.is_blocked else "not blocked"


async def _reachable(session: AsyncSession, user: User) -> str | None:
    return "blocked the bot" if user.unreachable_since is not None else None


async def _extend(session: AsyncSession, actor: Actor, user: User, params: dict[str, Any]) -> None:
    await subscriptions.extend(session, actor, await subscriptions.current_subscription(session, user), params["days"])


async def _bonus(session: AsyncSession, actor: Actor, user: User, params: dict[str, Any]) -> None:
    await subscriptions.grant_bonus_days(session, actor, user, params["days"])


async def _cancel(session: AsyncSession, actor: Actor, user: User, params: dict[str, Any]) -> None:
    await subscriptions.cancel(session, actor, await subscriptions.current_subscription(session, user))


async def _block(session: AsyncSession, actor: Actor, user: User, params: dict[str, Any]) -> None:
    await users.block(session, actor, user, params["reason"])


async def _unblock(session: AsyncSession, actor: Actor, user: User, params: dict[str, Any]) -> None:
    await users.unblock(session, actor, user, params.get("reason"))


async def _message(session: AsyncSession, actor: Actor, user: User, params: dict[str, Any]) -> None:
    await users.message(session, actor, user, params["text"])


def _whole(value: Any) -> Any:
    """Form fields arrive as text: "7" and "-3" are numbers here, anything else is left for the check to refuse."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _days(params: dict[str, Any]) -> dict[str, Any]:
    return {"days": subscriptions.valid_days(_whole(params.get("days")))}


def _positive_days(params: dict[str, Any]) -> dict[str, Any]:
    days = subscriptions.valid_days(_whole(params.get("days")))
    if days < 0:
        raise FieldInvalid("days", "Bonus days are a gift: give a positive number.")
    return {"days": days}


def _reason(params: dict[str, Any]) -> dict[str, Any]:
    return {"reason": users.valid_reason(params.get("reason"))}


def _optional_reason(params: dict[str, Any]) -> dict[str, Any]:
    reason = params.get("reason")
    return {"reason": users.valid_reason(reason)} if reason and str(reason).strip() else {}


def _text(params: dict[str, Any]) -> dict[str, Any]:
    return {"text": users.valid_message(params.get("text"))}


ACTIONS: dict[str, BulkAction] = {
    "extend": BulkAction(_has_subscription, _extend, _days),
    "bonus_days": BulkAction(_no_check, _bonus, _positive_days),
    "cancel": BulkAction(_cancellable, _cancel, lambda params: {}),
    "block": BulkAction(_blockable, _block, _reason),
    "unblock": BulkAction(_unblockable, _unblock, _optional_reason),
    "message": BulkAction(_reachable, _message, _text),
}


def action_named(name: str) -> BulkAction:
    if name not in ACTIONS:
        raise FieldInvalid("action", f"Choose one of: {', '.join(ACTIONS)}.")
    return ACTIONS[name]


async def dry_run(
    session: AsyncSession,
    actor: Actor,
    action: str,
    params: dict[str, Any],
    user_ids: list[int],
    *,
    source: dict[str, Any],
) -> BulkRun:
    """Check every customer without changing anything, and keep the list and the verdicts for the real run."""
    bulk = action_named(action)
    clean = bulk.validate(params)
    if not user_ids:
        raise FieldInvalid("selection", "No customers match: nothing to do.")
    if len(user_ids) > MAX_CUSTOMERS:
        raise FieldInvalid("selection", f"{len(user_ids)} customers; a bulk action takes at most {MAX_CUSTOMERS}.")
    found = {user.id: user for user in (await session.scalars(select(User).where(User.id.in_(user_ids)))).all()}
    preview: dict[str, str] = {}
    for user_id in user_ids:
        user = found.get(user_id)
        reason = "no such customer" if user is None else await bulk.check(session, user)
        preview[str(user_id)] = CHANGE if reason is None else f"skip: {reason}"
    run = BulkRun(
        staff_id=actor.id,
        action=action,
        params=clean,
        source=source,
        user_ids=list(user_ids),
        preview=preview,
        state=JobState.PREVIEWED,
    )
    session.add(run)
    await session.flush()
    return run


async def start(session: AsyncSession, actor: Actor, run_id: int) -> BulkRun:
    """Queue the real run of a dry run (once); the caller commits, then enqueues BULK_JOB."""
    run = await session.get(BulkRun, run_id, with_for_update=True)
    if run is None:
        raise NotFound("No such bulk action.")
    if run.state != JobState.PREVIEWED:
        raise Conflict("This bulk action has already been started.", code="bulk_started")
    run.state = JobState.QUEUED
    will_change = sum(1 for verdict in run.preview.values() if verdict == CHANGE)
    record_by(
        session,
        actor,
        action="bulk.start",
        entity_type="bulk_run",
        entity_id=run.id,
        before={"state": JobState.PREVIEWED.value},
        after={"state": JobState.QUEUED.value, "action": run.action, "params": run.params, "will_change": will_change},
    )
    return run


async def _apply_one(session: AsyncSession, bulk: BulkAction, actor: Actor, user_id: int, params: dict) -> str:
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        return "skipped: no such customer"
    reason = await bulk.check(session, user)
    if reason is not None:
        return f"skipped: {reason}"
    try:
        async with session.begin_nested():
            await bulk.apply(session, actor, user, params)
    except AppError as exc:
        return f"failed: {exc.message}"
    return "changed"


async def _claim(session: AsyncSession, run_id: int) -> BulkRun:
    """The run's row, locked for this transaction: a write first, so that on SQLite too (no row locks) a second
    runner of the same run (a retried job while the first is still alive) waits instead of acting twice."""
    await session.execute(update(BulkRun).where(BulkRun.id == run_id).values(processed=BulkRun.processed))
    return await session.get_one(BulkRun, run_id, populate_existing=True, with_for_update=True)


async def run(sessionmaker: async_sessionmaker[AsyncSession], run_id: int) -> JobState:
    """The real run, in batches, each committed with its progress and holding the run's row, so a repeat (a
    worker that died, or a second job) goes on where the report stops and never acts on anyone twice."""
    async with transaction(sessionmaker) as session:
        bulk_run = await _claim(session, run_id)
        if bulk_run.state not in (JobState.QUEUED, JobState.RUNNING):
            return bulk_run.state
        bulk_run.state = JobState.RUNNING
        bulk_run.started_at = bulk_run.started_at or utcnow()
        bulk, params = ACTIONS[bulk_run.action], dict(bulk_run.params)
        actor = Actor("staff", bulk_run.staff_id)
    while True:
        async with transaction(sessionmaker) as session:
            bulk_run = await _claim(session, run_id)
            batch = [uid for uid in bulk_run.user_ids if str(uid) not in bulk_run.report][:BATCH]
            if not batch:
                if bulk_run.state == JobState.RUNNING:
                    bulk_run.state, bulk_run.finished_at = JobState.DONE, utcnow()
                return bulk_run.state
            outcomes = {uid: await _apply_one(session, bulk, actor, uid, params) for uid in batch}
            bulk_run.report = {**bulk_run.report, **{str(uid): outcome for uid, outcome in outcomes.items()}}
            for outcome in outcomes.values():
                kind = outcome.split(":")[0]
                if kind == "changed":
                    bulk_run.changed += 1
                elif kind == "skipped":
                    bulk_run.skipped += 1
                else:
                    bulk_run.failed += 1
            bulk_run.processed += len(outcomes)


# A run still going: its page follows the progress (server-sent events) until the state leaves these.
IN_PROGRESS = frozenset({JobState.QUEUED, JobState.RUNNING})


def progress(bulk_run: BulkRun) -> dict[str, Any]:
    """Where a run is: what its page shows and its event stream sends."""
    return {
        "state": bulk_run.state.value,
        "total": len(bulk_run.user_ids),
        "processed": bulk_run.processed,
        "changed": bulk_run.changed,
        "skipped": bulk_run.skipped,
        "failed": bulk_run.failed,
    }


async def progress_of(sessionmaker: async_sessionmaker[AsyncSession], run_id: int) -> dict[str, Any] | None:
    """A fresh read of a run's progress in a short session of its own (a stream must not hold a transaction)."""
    async with sessionmaker() as session:
        bulk_run = await session.get(BulkRun, run_id)
        return None if bulk_run is None else progress(bulk_run)
