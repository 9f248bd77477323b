"""Segments on both databases: each kind picks exactly its users, language narrows any kind, and people who must
not get marketing (opted out, blocked, unreachable, demo) are never in any segment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import segments
from app.broadcasts.segments import Segment, SegmentError, SegmentKind
from app.kit.clock import utcnow
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, SubscriptionStatus
from tests.broadcasts.people import person, plan

ACTIVE, TRIAL, EXPIRED, PENDING = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIAL,
    SubscriptionStatus.EXPIRED,
    SubscriptionStatus.PENDING,
)


@pytest.fixture
async def town(db: AsyncSession) -> dict[str, object]:
    """Named users in every state, plus two plans."""
    month, year = await plan(db, "month"), await plan(db, "year")
    people = {
        "active_month": await person(db, subscription=ACTIVE, plan=month, paid=True),
        "trial_en": await person(db, language="en", subscription=TRIAL, plan=month),
        "expired_paid": await person(db, subscription=EXPIRED, ends_in=-timedelta(days=5), paid=True),
        # Still "active" in the table but past its end: not live, so expired.
        "lapsed": await person(db, subscription=ACTIVE, ends_in=-timedelta(hours=1)),
        "nothing_en": await person(db, language="en"),
        "active_year": await person(db, subscription=ACTIVE, plan=year, paid=True),
        # An unpaid checkout's pending subscription is no subscription.
        "pending_only": await person(db, subscription=PENDING),
        "trial_over": await person(db, subscription=TRIAL, ends_in=-timedelta(days=1)),
    }
    # None of these may ever get marketing, whatever they have.
    for excluded in (
        {"marketing_opt_out": True},
        {"is_blocked": True},
        {"unreachable_since": utcnow()},
        {"is_demo": True},
    ):
        await person(db, subscription=ACTIVE, plan=month, paid=True, **excluded)
        await person(db, language="en", **excluded)
    await db.commit()
    # Ids, not rows: each check rolls its deliveries back, which expires loaded rows.
    return {"plans": {"month": month.id, "year": year.id}, **{name: user.id for name, user in people.items()}}


async def _members(db: AsyncSession, town: dict, segment: Segment) -> set[str]:
    names = {user_id: name for name, user_id in town.items() if name != "plans"}
    delivered = await _materialized(db, segment)
    assert await segments.count(db, segment, utcnow()) == len(delivered)
    unknown = set(delivered) - set(names)
    assert not unknown, "an excluded user is in the segment"
    return {names[user_id] for user_id in delivered}


async def _materialized(db: AsyncSession, segment: Segment) -> list[int]:
    broadcast = Broadcast(title="t", bodies={"ru": "x"}, segment=segment.as_json(), status=BroadcastStatus.RUNNING)
    db.add(broadcast)
    await db.flush()
    total = await segments.materialize(db, broadcast.id, segment, utcnow())
    user_ids = list(
        (
            await db.scalars(select(BroadcastDelivery.user_id).where(BroadcastDelivery.broadcast_id == broadcast.id))
        ).all()
    )
    assert total == len(user_ids)
    await db.rollback()
    return user_ids


async def test_everyone_reachable(db: AsyncSession, town: dict) -> None:
    assert await _members(db, town, Segment(SegmentKind.ALL)) == {
        "active_month",
        "trial_en",
        "expired_paid",
        "lapsed",
        "nothing_en",
        "active_year",
        "pending_only",
        "trial_over",
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (SegmentKind.ACTIVE, {"active_month", "trial_en", "active_year"}),
        (SegmentKind.TRIAL, {"trial_en"}),
        (SegmentKind.EXPIRED, {"expired_paid", "lapsed", "trial_over"}),
        (SegmentKind.NEVER_PAID, {"trial_en", "lapsed", "nothing_en", "pending_only", "trial_over"}),
    ],
)
async def test_each_kind(db: AsyncSession, town: dict, kind: SegmentKind, expected: set[str]) -> None:
    assert await _members(db, town, Segment(kind)) == expected


async def test_by_plan_means_a_live_subscription_of_that_plan(db: AsyncSession, town: dict) -> None:
    month, year = town["plans"]["month"], town["plans"]["year"]
    assert await _members(db, town, Segment(SegmentKind.PLAN, plan_id=month)) == {"active_month", "trial_en"}
    assert await _members(db, town, Segment(SegmentKind.PLAN, plan_id=year)) == {"active_year"}


async def test_language_alone_and_combined(db: AsyncSession, town: dict) -> None:
    assert await _members(db, town, Segment(SegmentKind.LANGUAGE, language="en")) == {"trial_en", "nothing_en"}
    assert await _members(db, town, Segment(SegmentKind.ACTIVE, language="en")) == {"trial_en"}
    assert await _members(db, town, Segment(SegmentKind.NEVER_PAID, language="ru")) == {
        "lapsed",
        "pending_only",
        "trial_over",
    }


async def test_count_by_language(db: AsyncSession, town: dict) -> None:
    assert await segments.count_by_language(db, Segment(SegmentKind.ALL), utcnow()) == {"ru": 6, "en": 2}


async def test_a_second_audience_is_refused_by_the_database(db: AsyncSession, town: dict) -> None:
    segment = Segment(SegmentKind.ACTIVE)
    broadcast = Broadcast(title="t", bodies={"ru": "x"}, segment=segment.as_json(), status=BroadcastStatus.RUNNING)
    db.add(broadcast)
    await db.flush()
    assert await segments.materialize(db, broadcast.id, segment, utcnow()) == 3
    with pytest.raises(IntegrityError):
        await segments.materialize(db, broadcast.id, segment, utcnow())


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("vip", {}, "unknown segment 'vip'"),
        ("plan", {}, "needs a plan id"),
        ("plan", {"plan_id": 999_999}, "no plan #999999"),
        ("active", {"plan_id": 1}, "only goes with the plan segment"),
        ("language", {}, "needs a language"),
        ("all", {"language": "de"}, "unknown language 'de'"),
    ],
)
async def test_invalid_segments_are_refused(db: AsyncSession, kind: str, fields: dict, message: str) -> None:
    with pytest.raises(SegmentError, match=message):
        await segments.parse_segment(db, kind, **fields)
