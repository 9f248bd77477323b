"""Turning a succeeded payment into VPN time (SPEC §3.4, §4.4), inside the payment's own transaction.

Paying while active stacks onto the current end date; paying after expiry restarts from now on the same
subscription, so its VPN account (and the devices and traffic history on it) comes back instead of a new one.
The panel follows through the outbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import LIVE_STATUSES, Plan, Subscription, SubscriptionStatus, TrafficStrategy
from app.provisioning import service as provisioning
from app.runtime_settings import service as runtime_settings


async def latest_subscription(session: AsyncSession, user_id: int, *, lock: bool = False) -> Subscription | None:
    """The user's subscription that a payment extends: the one ending last (live or not). `lock` when the
    caller is about to change it (never while it then waits on a panel: the lock would be held over the call)."""
    query = (
        select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status != SubscriptionStatus.PENDING)
        .order_by(Subscription.ends_at.desc(), Subscription.id.desc())
        .limit(1)
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def add_days(session: AsyncSession, user_id: int, days: int, *, plan: Plan | None, now: datetime) -> Subscription:
    """Give the user `days` more of VPN access, creating the subscription if they never had one."""
    subscription = await latest_subscription(session, user_id, lock=True)
    if subscription is None:
        subscription = Subscription(
            user_id=user_id,
            plan_id=plan.id if plan else None,
            status=SubscriptionStatus.ACTIVE,
            starts_at=now,
            ends_at=now + timedelta(days=days),
            auto_renew=await runtime_settings.auto_renew_default(session),
        )
        session.add(subscription)
        await session.flush()
    else:
        live = subscription.status in LIVE_STATUSES and subscription.ends_at > now
        subscription.ends_at = (subscription.ends_at if live else now) + timedelta(days=days)
        subscription.status = SubscriptionStatus.ACTIVE
        if subscription.is_trial:
            # A trial starts with auto-renewal off because there is nothing to renew with, not because the
            # customer chose so (they cannot change it during a trial): the first payment turns it on (SPEC §4.3).
            subscription.auto_renew = await runtime_settings.auto_renew_default(session)
        subscription.is_trial = False
        subscription.renewal_failures = 0
        subscription.next_renewal_attempt_at = None
        subscription.cancelled_at = None
        if plan is not None:
            subscription.plan_id = plan.id
    account = await provisioning.account_for(session, subscription)
    if account is None:
        await provisioning.ensure_account(
            session,
            subscription,
            device_limit=plan.device_limit if plan else None,
            traffic_limit_bytes=plan.traffic_limit_bytes if plan else None,
            traffic_strategy=plan.traffic_strategy if plan else TrafficStrategy.NO_RESET,
        )
    else:
        # New limits, the new end date and a fresh traffic allowance, through the outbox.
        await provisioning.start_paid_period(session, account, plan)
    return subscription


async def take_days(session: AsyncSession, subscription: Subscription, days: int, *, now: datetime) -> None:
    """Take back `days` (a refunded payment), never ending before now; the panel follows."""
    subscription.ends_at = max(now, subscription.ends_at - timedelta(days=days))
    await provisioning.sync_subscription(session, subscription)
