"""What the customer page shows, loaded in one place: the profile, subscriptions over time, payments, usage,
VPN accounts, referrals, sessions and linked logins, notifications sent and the audit trail. Each list is
bounded (the newest first), so a customer with years of history still opens in a few queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.users.queries import customer_status
from app.cabinet.usage import UsageReport, usage_report
from app.models import (
    AuditLog,
    BrowserSession,
    Notification,
    Payment,
    Plan,
    ReferralReward,
    Server,
    Subscription,
    User,
    UserIdentity,
    VpnAccount,
)
from app.users.staff_actions import get_user

LIST_LIMIT = 50
USAGE_DAYS = 30


@dataclass(slots=True)
class CustomerDetail:
    user: User
    subscriptions: list[Subscription]
    plans: dict[int, Plan]
    accounts: list[tuple[VpnAccount, Server]]
    payments: list[Payment]
    usage: UsageReport
    referrer: User | None
    referrals: list[User]
    referral_count: int
    rewards: list[ReferralReward]
    sessions: list[BrowserSession]
    identities: list[UserIdentity]
    notifications: list[Notification]
    audit: list[AuditLog]

    @property
    def current(self) -> Subscription | None:
        """The subscription actions apply to: the one ending last (pending checkouts aside)."""
        live = [s for s in self.subscriptions if s.status.value != "pending"]
        return max(live, key=lambda s: (s.ends_at, s.id), default=None)

    @property
    def status(self) -> str:
        return customer_status(self.current)

    def plan_of(self, subscription: Subscription | None) -> Plan | None:
        return self.plans.get(subscription.plan_id) if subscription and subscription.plan_id else None

    def account_of(self, subscription: Subscription | None) -> VpnAccount | None:
        if subscription is None:
            return None
        return next((account for account, _ in self.accounts if account.subscription_id == subscription.id), None)


async def _list(session: AsyncSession, statement: Select[Any]) -> list[Any]:
    return list((await session.scalars(statement.limit(LIST_LIMIT))).all())


async def load_detail(session: AsyncSession, user_id: int, *, zone: tzinfo) -> CustomerDetail:
    user = await get_user(session, user_id)
    subscriptions = list(
        (
            await session.scalars(
                select(Subscription).where(Subscription.user_id == user.id).order_by(Subscription.starts_at.desc())
            )
        ).all()
    )
    plan_ids = {s.plan_id for s in subscriptions if s.plan_id}
    plans = {p.id: p for p in (await session.scalars(select(Plan).where(Plan.id.in_(plan_ids)))).all()}
    accounts = [
        (account, server)
        for account, server in (
            await session.execute(
                select(VpnAccount, Server)
                .join(Server, Server.id == VpnAccount.server_id)
                .where(VpnAccount.user_id == user.id)
                .order_by(VpnAccount.id.desc())
            )
        ).all()
    ]
    payments = await _list(session, select(Payment).where(Payment.user_id == user.id).order_by(Payment.id.desc()))
    referrer = await session.get(User, user.referrer_id) if user.referrer_id else None
    referrals = await _list(session, select(User).where(User.referrer_id == user.id).order_by(User.id.desc()))
    referral_count = int(await session.scalar(select(func.count(User.id)).where(User.referrer_id == user.id)) or 0)
    rewards = await _list(
        session,
        select(ReferralReward).where(ReferralReward.beneficiary_id == user.id).order_by(ReferralReward.id.desc()),
    )
    sessions = await _list(
        session, select(BrowserSession).where(BrowserSession.user_id == user.id).order_by(BrowserSession.id.desc())
    )
    identities = await _list(
        session, select(UserIdentity).where(UserIdentity.user_id == user.id).order_by(UserIdentity.id.desc())
    )
    notifications = await _list(
        session, select(Notification).where(Notification.user_id == user.id).order_by(Notification.id.desc())
    )
    audit = await _list(session, _audit_trail(user, subscriptions, accounts, payments).order_by(AuditLog.id.desc()))
    return CustomerDetail(
        user=user,
        subscriptions=subscriptions,
        plans=plans,
        accounts=accounts,
        payments=payments,
        usage=await usage_report(session, user, days=USAGE_DAYS, zone=zone),
        referrer=referrer,
        referrals=referrals,
        referral_count=referral_count,
        rewards=rewards,
        sessions=sessions,
        identities=identities,
        notifications=notifications,
        audit=audit,
    )


def _audit_trail(
    user: User,
    subscriptions: list[Subscription],
    accounts: list[tuple[VpnAccount, Server]],
    payments: list[Payment],
) -> Select[Any]:
    """Everything recorded about the customer: their own changes and staff's, on them and on what they own."""
    entities = [
        ("user", [str(user.id)]),
        ("subscription", [str(s.id) for s in subscriptions]),
        ("vpn_account", [str(a.id) for a, _ in accounts]),
        ("payment", [p.public_id for p in payments]),
    ]
    return select(AuditLog).where(
        or_(
            *(and_(AuditLog.entity_type == kind, AuditLog.entity_id.in_(ids)) for kind, ids in entities if ids),
            and_(AuditLog.actor_type == "user", AuditLog.actor_id == str(user.id)),
        )
    )
