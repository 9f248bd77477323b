"""Who a broadcast goes to. A segment is stored on the broadcast as JSON, `{"kind": ..., "plan_id": ...,
"language": ...}`; here it becomes one SQL query, so counting it and writing the deliveries (INSERT … SELECT)
stay in the database however large the audience is.

Kinds: all; active (a live subscription: trial or active, not yet ended); expired (had a subscription, none
live); trial (a live trial); never_paid (no succeeded payment); plan (a live subscription of `plan_id`);
language (everyone speaking `language`). `language` also narrows any other kind. A broadcast is marketing, so
users who opted out, are blocked, unreachable (they blocked the bot) or demo accounts never get one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, insert, literal, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts.errors import BroadcastInvalid
from app.kit.i18n import available_languages
from app.models import LIVE_STATUSES, BroadcastDelivery, DeliveryStatus, Plan, Subscription, SubscriptionStatus, User
from app.referrals.service import has_live_subscription, has_paid


class SegmentKind(enum.StrEnum):
    ALL = "all"
    ACTIVE = "active"
    EXPIRED = "expired"
    TRIAL = "trial"
    NEVER_PAID = "never_paid"
    PLAN = "plan"
    LANGUAGE = "language"


class SegmentError(BroadcastInvalid):
    """The audience segment is not valid."""


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    plan_id: int | None = None
    language: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "plan_id": self.plan_id, "language": self.language}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        """The segment stored on a broadcast (already validated when it was created)."""
        return cls(SegmentKind(data["kind"]), data.get("plan_id"), data.get("language"))

    def describe(self) -> str:
        """A short label for lists and the CLI: "plan #3, en"."""
        label = f"plan #{self.plan_id}" if self.kind is SegmentKind.PLAN else self.kind.value
        if self.language and self.kind is not SegmentKind.LANGUAGE:
            label += f", {self.language}"
        return label if self.kind is not SegmentKind.LANGUAGE else f"language {self.language}"


async def parse_segment(
    session: AsyncSession, kind: str, *, plan_id: int | None = None, language: str | None = None
) -> Segment:
    """A valid segment, or SegmentError naming what is wrong (unknown kind, missing or unknown plan/language)."""
    try:
        segment_kind = SegmentKind(kind)
    except ValueError:
        known = ", ".join(item.value for item in SegmentKind)
        raise SegmentError(f"unknown segment {kind!r}: expected one of {known}", field="segment") from None
    if language is not None and language not in available_languages():
        raise SegmentError(
            f"unknown language {language!r}: expected one of {', '.join(available_languages())}", field="language"
        )
    if segment_kind is SegmentKind.LANGUAGE and language is None:
        raise SegmentError("the language segment needs a language", field="language")
    if segment_kind is SegmentKind.PLAN:
        if plan_id is None:
            raise SegmentError("the plan segment needs a plan id", field="plan_id")
        if await session.get(Plan, plan_id) is None:
            raise SegmentError(f"no plan #{plan_id}", field="plan_id")
    elif plan_id is not None:
        raise SegmentError("a plan id only goes with the plan segment", field="plan_id")
    return Segment(segment_kind, plan_id, language)


def reachable(user: Any = User) -> ColumnElement[bool]:
    """Users a marketing message may go to at all."""
    return and_(
        user.is_blocked == false(),
        user.marketing_opt_out == false(),
        user.unreachable_since.is_(None),
        user.is_demo == false(),
    )


def _condition(segment: Segment, now: datetime) -> ColumnElement[bool]:
    live_trial = exists().where(
        Subscription.user_id == User.id, Subscription.status == SubscriptionStatus.TRIAL, Subscription.ends_at > now
    )
    had_subscription = exists().where(
        Subscription.user_id == User.id, Subscription.status != SubscriptionStatus.PENDING
    )
    live_on_plan = exists().where(
        Subscription.user_id == User.id,
        Subscription.plan_id == segment.plan_id,
        Subscription.status.in_(LIVE_STATUSES),
        Subscription.ends_at > now,
    )
    conditions: dict[SegmentKind, ColumnElement[bool]] = {
        SegmentKind.ALL: true(),
        SegmentKind.LANGUAGE: true(),
        SegmentKind.ACTIVE: has_live_subscription(User, now),
        SegmentKind.EXPIRED: and_(had_subscription, ~has_live_subscription(User, now)),
        SegmentKind.TRIAL: live_trial,
        SegmentKind.NEVER_PAID: ~has_paid(User),
        SegmentKind.PLAN: live_on_plan,
    }
    condition = and_(reachable(), conditions[segment.kind])
    if segment.language is not None:
        condition = and_(condition, User.language == segment.language)
    return condition


async def count(session: AsyncSession, segment: Segment, now: datetime) -> int:
    return int(await session.scalar(select(func.count()).select_from(User).where(_condition(segment, now))) or 0)


async def count_by_language(session: AsyncSession, segment: Segment, now: datetime) -> dict[str, int]:
    """Recipients per user language, largest first."""
    rows = await session.execute(
        select(User.language, func.count())
        .where(_condition(segment, now))
        .group_by(User.language)
        .order_by(func.count().desc(), User.language)
    )
    return {language: int(number) for language, number in rows.all()}


async def materialize(session: AsyncSession, broadcast_id: int, segment: Segment, now: datetime) -> int:
    """Write one pending delivery per recipient (one INSERT … SELECT) and return how many. Called once per
    broadcast, under its lease; a second call would break the (broadcast, user) unique constraint and roll back."""
    recipients = select(
        literal(broadcast_id).label("broadcast_id"),
        User.id,
        literal(DeliveryStatus.PENDING.value).label("status"),
        literal(0).label("attempts"),
    ).where(_condition(segment, now))
    # In user order, so deliveries (sent in id order) go out oldest customers first.
    statement = insert(BroadcastDelivery).from_select(
        ["broadcast_id", "user_id", "status", "attempts"], recipients.order_by(User.id)
    )
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def refresh_statistics(session: AsyncSession) -> None:
    """After a large audience is written, let PostgreSQL's planner know (autovacuum would only catch up later):
    with statistics from before the insert it takes the new deliveries for a handful of rows and sorts every
    pending one of them for each group instead of reading the primary key in order."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("ANALYZE broadcast_deliveries"))
