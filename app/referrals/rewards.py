"""Referral rewards (SPEC §7), granted inside the transaction of the referred user's first successful payment.

The referred user gets `referral_bonus_days_referred` on that payment; the referrer gets
`referral_bonus_days_referrer`, plus a milestone bonus when their count of paying referrals reaches one of
`referral_milestones`. "Exactly once" is the unique dedupe key of each reward row: a second webhook, a second
payment or a concurrent transaction inserts nothing. The referrer's row is locked first, so two referrals paying
at the same moment are counted one after the other and a milestone cannot be skipped or paid twice.

A reward for someone with no live subscription stays pending (applied_at NULL) and is added to their next
payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.config import Settings
from app.db import insert_for
from app.kit.clock import utcnow
from app.models import (
    Payment,
    PaymentStatus,
    ReferralReward,
    ReferralRewardKind,
    User,
)
from app.notifications.service import notify_user
from app.referrals.service import has_live_subscription, has_paid
from app.runtime_settings import service as runtime_settings
from app.subscriptions.activation import add_days

# A payment refunded later still was a payment: the next one is not the first.
EVER_PAID = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)


@dataclass(frozen=True, slots=True)
class PayerBonus:
    days: int  # bonus days to add to the payer's own payment
    reward_ids: list[int]


async def _grant(
    session: AsyncSession,
    *,
    beneficiary_id: int,
    source_user_id: int,
    kind: ReferralRewardKind,
    days: int,
    dedupe_key: str,
    payment: Payment,
    milestone: int | None = None,
) -> int | None:
    """Insert the reward once; returns its id, or None when it was granted before."""
    statement = (
        insert_for(session, ReferralReward)
        .values(
            beneficiary_id=beneficiary_id,
            source_user_id=source_user_id,
            kind=kind,
            days=days,
            milestone=milestone,
            payment_id=payment.id,
            dedupe_key=dedupe_key,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(ReferralReward.id)
    )
    return await session.scalar(statement)


async def _is_first_payment(session: AsyncSession, payment: Payment) -> bool:
    earlier = select(Payment.id).where(
        Payment.user_id == payment.user_id, Payment.id != payment.id, Payment.status.in_(EVER_PAID)
    )
    return not await session.scalar(select(exists(earlier)))


async def _paying_referrals(session: AsyncSession, referrer_id: int) -> int:
    """The "paid" count of the referral page, which milestones are measured against."""
    return await session.scalar(select(func.count(User.id)).where(User.referrer_id == referrer_id, has_paid(User))) or 0


async def _has_live_subscription(session: AsyncSession, user: User, now: datetime) -> bool:
    return bool(await session.scalar(select(has_live_subscription(user, now))))


async def _reward_referrer(
    session: AsyncSession, referrer: User, payer: User, payment: Payment, settings: Settings, now: datetime
) -> None:
    granted: list[tuple[int, int]] = []  # (reward id, days)
    live = await runtime_settings.current(session, settings)
    days = live.referral_bonus_days_referrer
    reward_id = await _grant(
        session,
        beneficiary_id=referrer.id,
        source_user_id=payer.id,
        kind=ReferralRewardKind.FIRST_PAYMENT_REFERRER,
        days=days,
        dedupe_key=f"first_payment:{payer.id}:referrer",
        payment=payment,
    )
    if reward_id is None:
        return
    granted.append((reward_id, days))
    count = await _paying_referrals(session, referrer.id)
    for milestone, milestone_days in sorted(live.referral_milestones.items()):
        if milestone > count:
            break
        milestone_id = await _grant(
            session,
            beneficiary_id=referrer.id,
            source_user_id=payer.id,
            kind=ReferralRewardKind.MILESTONE,
            days=milestone_days,
            dedupe_key=f"milestone:{referrer.id}:{milestone}",
            payment=payment,
            milestone=milestone,
        )
        if milestone_id is not None:
            granted.append((milestone_id, milestone_days))
    total = sum(days for _, days in granted)
    applied = total > 0 and await _has_live_subscription(session, referrer, now)
    if applied:
        await add_days(session, referrer.id, total, plan=None, now=now)
        await _mark_applied(session, [reward_id for reward_id, _ in granted], now)
    for granted_id, granted_days in granted:
        await notify_user(
            session,
            referrer.id,
            "referral_bonus",
            {"days": granted_days, "applied": applied},
            dedupe_key=f"referral_reward:{granted_id}",
        )


async def _mark_applied(session: AsyncSession, reward_ids: list[int], now: datetime) -> None:
    if reward_ids:
        await session.execute(
            update(ReferralReward)
            .where(ReferralReward.id.in_(reward_ids), ReferralReward.applied_at.is_(None))
            .values(applied_at=now)
            .execution_options(synchronize_session=False)
        )


async def _pending_for(session: AsyncSession, user_id: int) -> list[ReferralReward]:
    return list(
        (
            await session.scalars(
                select(ReferralReward)
                .where(ReferralReward.beneficiary_id == user_id, ReferralReward.applied_at.is_(None))
                .with_for_update()
            )
        ).all()
    )


async def on_successful_payment(
    session: AsyncSession, payment: Payment, payer: User, settings: Settings, *, now: datetime
) -> PayerBonus:
    """Grant what this payment earns and collect the payer's pending rewards; returns the payer's bonus days
    (the caller adds them to this payment's activation and marks the returned rewards applied)."""
    if payer.referrer_id is not None and await _is_first_payment(session, payment):
        referrer = await session.scalar(select(User).where(User.id == payer.referrer_id).with_for_update())
        if referrer is None or referrer.id == payer.id or referrer.referrer_id == payer.id:
            audit.record(
                session,
                actor_type="system",
                actor_id=None,
                action="referral.rejected",
                entity_type="user",
                entity_id=payer.id,
                after={"referrer_id": payer.referrer_id, "reason": "self or cycle"},
            )
        else:
            await _grant(
                session,
                beneficiary_id=payer.id,
                source_user_id=referrer.id,
                kind=ReferralRewardKind.FIRST_PAYMENT_REFERRED,
                days=(await runtime_settings.current(session, settings)).referral_bonus_days_referred,
                dedupe_key=f"first_payment:{payer.id}:referred",
                payment=payment,
            )
            await _reward_referrer(session, referrer, payer, payment, settings, now)
    pending = [reward for reward in await _pending_for(session, payer.id) if reward.days > 0]
    return PayerBonus(sum(reward.days for reward in pending), [reward.id for reward in pending])


async def mark_applied(session: AsyncSession, bonus: PayerBonus, now: datetime) -> None:
    await _mark_applied(session, bonus.reward_ids, now)
