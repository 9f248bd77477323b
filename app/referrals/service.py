"""What the customer's referral page shows (SPEC §3.5, §7): the personal links, the counts, bonus days, the
history and the leaderboard. Read-only: the rules that grant rewards live with payments. Every query takes an
explicit `now`, so tests need no clock tricks."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, exists, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models import (
    LIVE_STATUSES,
    Payment,
    PaymentStatus,
    ReferralReward,
    ReferralRewardKind,
    Subscription,
    User,
)
from app.users.service import REFERRAL_PREFIX

LEADERBOARD_SIZE = 10
HISTORY_SIZE = 10


class Period(enum.StrEnum):
    WEEK = "week"
    MONTH = "month"
    ALL = "all"

    @property
    def length(self) -> timedelta | None:
        """A rolling window ending now (None: all time)."""
        return {Period.WEEK: timedelta(days=7), Period.MONTH: timedelta(days=30)}.get(self)


# --- links ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralLinks:
    code: str
    bot: str | None  # t.me/<bot>?start=ref_<code>: the chat with the bot, /start records the referral
    mini_app: str | None  # opens the Mini App directly; initData's start_param records the referral


def referral_links(code: str, *, bot_username: str, mini_app_short_name: str = "") -> ReferralLinks:
    """The user's invite links; without a bot username there is nothing to link to but the code itself."""
    bot = bot_username.strip().lstrip("@")
    if not bot:
        return ReferralLinks(code, None, None)
    param = f"{REFERRAL_PREFIX}{code}"
    # Without a short name, `?startapp` on the bot itself opens the bot's main Mini App (set in @BotFather).
    app_path = f"/{mini_app_short_name.strip('/')}" if mini_app_short_name.strip("/") else ""
    return ReferralLinks(code, f"https://t.me/{bot}?start={param}", f"https://t.me/{bot}{app_path}?startapp={param}")


MASK = "***"


def mask_name(*candidates: str | None) -> str:
    """The first non-empty name cut to its first two letters ("An***"); one letter when it is that short."""
    for candidate in candidates:
        name = (candidate or "").strip().lstrip("@").strip()
        if name:
            return name[: 1 if len(name) <= 2 else 2] + MASK
    return MASK


# --- counts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralStats:
    invited: int
    active: int  # invited users with a live (active or trial, not yet ended) subscription
    paid: int  # invited users with at least one succeeded payment
    days_earned: int
    days_used: int  # rewards already applied (ReferralReward.applied_at set)

    @property
    def days_pending(self) -> int:
        return self.days_earned - self.days_used


def has_live_subscription(user: Any, now: datetime) -> Any:
    """EXISTS clause: `user` (the User entity, or one user) has VPN access at `now`."""
    return exists().where(
        Subscription.user_id == user.id, Subscription.status.in_(LIVE_STATUSES), Subscription.ends_at > now
    )


def has_paid(user: Any) -> Any:
    """EXISTS clause: `user` (the User entity, or one user) has a succeeded payment."""
    return exists().where(Payment.user_id == user.id, Payment.status == PaymentStatus.SUCCEEDED)


async def referral_stats(session: AsyncSession, user_id: int, *, now: datetime) -> ReferralStats:
    """Invited / active / paid friends and bonus days earned / used, in one query."""
    friends = (
        select(
            func.count().label("invited"),
            func.coalesce(func.sum(case((has_live_subscription(User, now), 1), else_=0)), 0).label("active"),
            func.coalesce(func.sum(case((has_paid(User), 1), else_=0)), 0).label("paid"),
        )
        .where(User.referrer_id == user_id)
        .subquery()
    )
    days = (
        select(
            func.coalesce(func.sum(ReferralReward.days), 0).label("earned"),
            func.coalesce(
                func.sum(case((ReferralReward.applied_at.is_not(None), ReferralReward.days), else_=0)), 0
            ).label("used"),
        )
        .where(ReferralReward.beneficiary_id == user_id)
        .subquery()
    )
    row = (await session.execute(select(friends, days).select_from(friends.join(days, true())))).one()
    return ReferralStats(int(row.invited), int(row.active), int(row.paid), int(row.earned), int(row.used))


# --- history --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryItem:
    at: datetime
    kind: str  # "joined" (a friend signed up with the link) or a ReferralRewardKind value
    name: str  # the friend, masked
    days: int = 0
    milestone: int | None = None
    applied: bool = True
    paid: bool = False  # for "joined": the friend has paid since
    active: bool = False  # for "joined": the friend's subscription is live now


async def referral_history(
    session: AsyncSession, user_id: int, *, now: datetime, limit: int = HISTORY_SIZE
) -> list[HistoryItem]:
    """The latest friends who joined and rewards received, newest first."""
    friends = await session.execute(
        select(
            User.first_name,
            User.username,
            User.created_at,
            has_live_subscription(User, now).label("active"),
            has_paid(User).label("paid"),
        )
        .where(User.referrer_id == user_id)
        .order_by(User.created_at.desc(), User.id.desc())
        .limit(limit)
    )
    source = aliased(User)
    rewards = await session.execute(
        select(ReferralReward, source.first_name, source.username)
        .outerjoin(source, source.id == ReferralReward.source_user_id)
        .where(ReferralReward.beneficiary_id == user_id)
        .order_by(ReferralReward.created_at.desc(), ReferralReward.id.desc())
        .limit(limit)
    )
    items = [
        HistoryItem(
            row.created_at,
            "joined",
            mask_name(row.first_name, row.username),
            paid=bool(row.paid),
            active=bool(row.active),
        )
        for row in friends
    ]
    items += [
        HistoryItem(
            reward.created_at,
            ReferralRewardKind(reward.kind).value,
            mask_name(first_name, username),
            days=reward.days,
            milestone=reward.milestone,
            applied=reward.applied_at is not None,
        )
        for reward, first_name, username in rewards
    ]
    # A stable sort: at the same instant the reward (listed second) stays after the sign-up that caused it.
    items.sort(key=lambda item: item.at, reverse=True)
    return items[:limit]


# --- leaderboard ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaderboardEntry:
    rank: int  # shared by ties (1, 2, 2, 4)
    name: str
    invited: int
    is_viewer: bool


@dataclass(frozen=True, slots=True)
class Leaderboard:
    period: Period
    top: list[LeaderboardEntry]
    viewer: LeaderboardEntry | None  # None: the viewer invited nobody in the window

    @property
    def viewer_outside_top(self) -> bool:
        return self.viewer is not None and self.viewer not in self.top


async def leaderboard(
    session: AsyncSession, viewer_id: int, period: Period, *, now: datetime, size: int = LEADERBOARD_SIZE
) -> Leaderboard:
    """Top referrers by friends who signed up in the window, plus the viewer's own place, in one query.

    Ties share a rank; among them whoever reached the count first is listed first. Blocked referrers are left
    out (a board topped by a banned fraudster helps nobody)."""
    referrer = aliased(User)
    counted = (
        select(
            referrer.id.label("referrer_id"),
            referrer.first_name,
            referrer.username,
            func.count().label("invited"),
            func.max(User.created_at).label("last_at"),
        )
        .select_from(User)
        .join(referrer, referrer.id == User.referrer_id)
        .where(referrer.is_blocked.is_(False), User.created_at <= now)
        .group_by(referrer.id, referrer.first_name, referrer.username)
    )
    if period.length is not None:
        counted = counted.where(User.created_at > now - period.length)
    counts = counted.subquery()
    ranked = select(
        counts,
        func.rank().over(order_by=counts.c.invited.desc()).label("rank"),
        func.row_number()
        .over(order_by=(counts.c.invited.desc(), counts.c.last_at.asc(), counts.c.referrer_id.asc()))
        .label("position"),
    ).subquery()
    rows = await session.execute(
        select(ranked)
        .where(or_(ranked.c.position <= size, ranked.c.referrer_id == viewer_id))
        .order_by(ranked.c.position)
    )
    top: list[LeaderboardEntry] = []
    viewer: LeaderboardEntry | None = None
    for row in rows:
        entry = LeaderboardEntry(
            int(row.rank), mask_name(row.first_name, row.username), int(row.invited), row.referrer_id == viewer_id
        )
        if row.position <= size:
            top.append(entry)
        if entry.is_viewer:
            viewer = entry
    return Leaderboard(period, top, viewer)
