"""The free trial (SPEC §4.2): offered once per user and once per Telegram account (a user who deletes their
data and comes back is the same Telegram id), full features, provisioned through the outbox like any other
subscription. "Once" is enforced by unique constraints on trial_grants, not by a check in Python, so two
taps at the same moment cannot both win."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.kit.clock import utcnow
from app.kit.errors import Conflict
from app.models import Plan, Subscription, SubscriptionStatus, TrialGrant, User
from app.provisioning import service as provisioning


class TrialUnavailable(Conflict):
    """The free trial has already been used on this account."""

    code = "trial_used"


async def trial_available(session: AsyncSession, user: User, *, trial_days: int) -> bool:
    """Whether the trial may still be offered: enabled, never granted, and no subscription of any kind yet."""
    if trial_days <= 0:
        return False
    used = select(TrialGrant.id).where((TrialGrant.user_id == user.id) | (TrialGrant.telegram_id == user.telegram_id))
    subscribed = select(Subscription.id).where(Subscription.user_id == user.id)
    return not await session.scalar(select(exists(used) | exists(subscribed)))


async def _full_feature_limits(session: AsyncSession) -> dict[str, Any]:
    """The trial gets the limits of the first active plan: it should feel like the real thing."""
    plan = await session.scalar(select(Plan).where(Plan.is_active).order_by(Plan.sort_order, Plan.id).limit(1))
    if plan is None:
        return {}
    return {
        "device_limit": plan.device_limit,
        "traffic_limit_bytes": plan.traffic_limit_bytes,
        "traffic_strategy": plan.traffic_strategy,
    }


async def activate_trial(session: AsyncSession, user: User, *, trial_days: int, ip: str | None = None) -> Subscription:
    """Grant the trial and queue its VPN account; raises TrialUnavailable if it was used or is disabled."""
    if not await trial_available(session, user, trial_days=trial_days):
        raise TrialUnavailable()
    grant = TrialGrant(user_id=user.id, telegram_id=user.telegram_id)
    try:
        async with session.begin_nested():
            session.add(grant)
            await session.flush()
    except IntegrityError:
        raise TrialUnavailable() from None
    now = utcnow()
    subscription = Subscription(
        user_id=user.id,
        status=SubscriptionStatus.TRIAL,
        is_trial=True,
        starts_at=now,
        ends_at=now + timedelta(days=trial_days),
        auto_renew=False,
    )
    session.add(subscription)
    await session.flush()
    grant.subscription_id = subscription.id
    await provisioning.ensure_account(session, subscription, **await _full_feature_limits(session))
    audit.record(
        session,
        actor_type="user",
        actor_id=user.id,
        action="trial.activated",
        entity_type="subscription",
        entity_id=subscription.id,
        after={"ends_at": subscription.ends_at.isoformat(), "days": trial_days},
        ip=ip,
    )
    return subscription
