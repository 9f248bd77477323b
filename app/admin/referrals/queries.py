"""The referral program as staff see it. Invited: customers who came by someone's link (users.referrer_id).
Active: invited customers with a live subscription now. Paid: invited customers with a succeeded payment (the
customer page's rule, referrals.service.has_paid). Bonus days: every referral reward granted, and those already
added to a subscription (applied_at). Suspicious: one IP address behind the browser sign-ins of several invited
customers (BrowserSession.ip is the only address we record; Telegram sign-ins carry none)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models import AuditLog, BrowserSession, Payment, ReferralReward, User
from app.referrals.service import has_live_subscription, has_paid
from app.stats import figures
from app.users.service import SELF_REFERRAL

TOP_SIZE = 20
# Invited customers signing in from one address before it is listed.
SHARED_IP_MIN = 3
FRIENDS_SHOWN = 500


@dataclass(frozen=True, slots=True)
class ProgramFigures:
    invited: int
    active: int
    paid: int
    referrers: int
    days_granted: int
    days_used: int

    @property
    def conversion(self) -> Decimal | None:
        return Decimal(self.paid) / self.invited if self.invited else None


async def program_figures(session: AsyncSession, now: datetime) -> ProgramFigures:
    invited, active, paid, referrers = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((has_live_subscription(User, now), 1), else_=0)), 0),
                func.coalesce(func.sum(case((has_paid(User), 1), else_=0)), 0),
                func.count(User.referrer_id.distinct()),
            ).where(User.referrer_id.is_not(None))
        )
    ).one()
    granted, used = (
        await session.execute(
            select(
                func.coalesce(func.sum(ReferralReward.days), 0),
                func.coalesce(
                    func.sum(case((ReferralReward.applied_at.is_not(None), ReferralReward.days), else_=0)), 0
                ),
            )
        )
    ).one()
    return ProgramFigures(invited, int(active), int(paid), referrers, int(granted), int(used))


@dataclass(frozen=True, slots=True)
class ReferrerRow:
    user: User
    invited: int
    paid: int
    days_earned: int


async def top_referrers(session: AsyncSession, limit: int = TOP_SIZE) -> list[ReferrerRow]:
    friend = aliased(User)
    counts = (
        select(
            friend.referrer_id.label("referrer_id"),
            func.count().label("invited"),
            func.coalesce(func.sum(case((has_paid(friend), 1), else_=0)), 0).label("paid"),
        )
        .where(friend.referrer_id.is_not(None))
        .group_by(friend.referrer_id)
        .subquery()
    )
    earned = (
        select(ReferralReward.beneficiary_id.label("user_id"), func.sum(ReferralReward.days).label("days"))
        .group_by(ReferralReward.beneficiary_id)
        .subquery()
    )
    rows = await session.execute(
        select(User, counts.c.invited, counts.c.paid, func.coalesce(earned.c.days, 0))
        .join(counts, counts.c.referrer_id == User.id)
        .outerjoin(earned, earned.c.user_id == User.id)
        .order_by(counts.c.invited.desc(), counts.c.paid.desc(), User.id)
        .limit(limit)
    )
    return [ReferrerRow(user, invited, int(paid), int(days)) for user, invited, paid, days in rows]


@dataclass(frozen=True, slots=True)
class SharedAddress:
    ip: str
    customers: int
    referrers: int


async def shared_addresses(session: AsyncSession, minimum: int = SHARED_IP_MIN) -> list[SharedAddress]:
    """Addresses behind the browser sign-ins of `minimum` or more invited customers, most first."""
    customers = func.count(BrowserSession.user_id.distinct())
    rows = await session.execute(
        select(BrowserSession.ip, customers, func.count(User.referrer_id.distinct()))
        .join(User, User.id == BrowserSession.user_id)
        .where(User.referrer_id.is_not(None), BrowserSession.ip.is_not(None))
        .group_by(BrowserSession.ip)
        .having(customers >= minimum)
        .order_by(customers.desc(), BrowserSession.ip)
        .limit(50)
    )
    return [SharedAddress(ip, count, referrers) for ip, count, referrers in rows]


@dataclass(frozen=True, slots=True)
class FriendRow:
    user: User
    active: bool
    payments: int
    revenue: dict[str, int]  # minor units per currency, refunds taken off


async def friends_of(session: AsyncSession, referrer_id: int, now: datetime) -> list[FriendRow]:
    friends = (
        await session.execute(
            select(User, has_live_subscription(User, now))
            .where(User.referrer_id == referrer_id)
            .order_by(User.created_at.desc(), User.id.desc())
            .limit(FRIENDS_SHOWN)
        )
    ).all()
    ids = [user.id for user, _active in friends]
    money: dict[int, tuple[int, dict[str, int]]] = {}
    if ids:
        paid = await session.execute(
            select(
                Payment.user_id,
                Payment.currency,
                func.count(),
                func.sum(Payment.amount_minor - figures.refunded_minor()),
            )
            .where(Payment.user_id.in_(ids), Payment.status.in_(figures.PAID_STATUSES))
            .group_by(Payment.user_id, Payment.currency)
        )
        for user_id, currency, count, net in paid:
            payments, revenue = money.get(user_id, (0, {}))
            money[user_id] = (payments + count, revenue | {currency: int(net or 0)})
    return [
        FriendRow(user, bool(active), *money.get(user.id, (0, {})))  # type: ignore[arg-type]
        for user, active in friends
    ]


@dataclass(frozen=True, slots=True)
class RefusedReferral:
    at: datetime
    user_id: int | None
    user: User | None
    reason: str  # "self": came in through their own link; "cycle": the payer's referrer was themselves or theirs


# What the product refused and audited: app/users/service.py (own link), app/referrals/rewards.py (self or cycle).
REFUSED_ACTIONS = {SELF_REFERRAL: "self", "referral.rejected": "cycle"}


async def refused_referrals(session: AsyncSession, limit: int = 50) -> list[RefusedReferral]:
    """The latest self-referral attempts and rewards refused for a cycle, newest first."""
    rows = (
        await session.scalars(
            select(AuditLog)
            .where(AuditLog.action.in_(list(REFUSED_ACTIONS)), AuditLog.entity_type == "user")
            .order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
            .limit(limit)
        )
    ).all()
    ids = {int(row.entity_id) for row in rows if row.entity_id and row.entity_id.isdigit()}
    users = {user.id: user for user in await session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}
    result = []
    for row in rows:
        user_id = int(row.entity_id) if row.entity_id and row.entity_id.isdigit() else None
        result.append(RefusedReferral(row.created_at, user_id, users.get(user_id or 0), REFUSED_ACTIONS[row.action]))
    return result
