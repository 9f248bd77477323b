"""Promo codes (SPEC §8): percent, fixed per currency, or extra days; single or multi use, once per user,
validity window, max uses, plans, active flag.

A checkout *holds* a use: `used_count` is raised by a conditional UPDATE (`used_count < max_uses`), so the last
use cannot be taken twice, and a partial unique index allows one live redemption per user of a once-per-user
code. The hold becomes *redeemed* when the payment succeeds and is *released* (the use given back) when the
checkout fails, is cancelled or expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.errors import ValidationFailed
from app.kit.money import Money
from app.models import (
    Payment,
    Plan,
    PromoCode,
    PromoCodeAmount,
    PromoKind,
    PromoRedemption,
    RedemptionStatus,
    User,
    promo_code_plans,
)

MAX_CODE_LENGTH = 64


class PromoInvalid(ValidationFailed):
    """The code cannot be used for this checkout; `code` says why (shown to the customer, translated)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, code=f"promo_{reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PromoEffect:
    """What a valid code does to one plan price."""

    promo: PromoCode
    amount: Money  # the price after the discount
    discount: Money
    extra_days: int


def normalize(code: str) -> str:
    return code.strip().upper()


async def _plan_ids(session: AsyncSession, promo: PromoCode) -> set[int]:
    rows = await session.scalars(select(promo_code_plans.c.plan_id).where(promo_code_plans.c.promo_code_id == promo.id))
    return set(rows.all())


async def _already_used(session: AsyncSession, promo: PromoCode, user: User) -> bool:
    live = select(PromoRedemption.id).where(
        PromoRedemption.promo_code_id == promo.id,
        PromoRedemption.user_id == user.id,
        PromoRedemption.status != RedemptionStatus.RELEASED,
    )
    return bool(await session.scalar(select(exists(live))))


async def evaluate(
    session: AsyncSession, raw_code: str, *, user: User, plan: Plan, price: Money, now: datetime
) -> PromoEffect:
    """Check every rule for this user, plan and price; raises PromoInvalid naming the first that fails."""
    code = normalize(raw_code)
    if not code or len(code) > MAX_CODE_LENGTH:
        raise PromoInvalid("not_found", "There is no such promo code.")
    promo = await session.scalar(select(PromoCode).where(PromoCode.code == code))
    if promo is None:
        raise PromoInvalid("not_found", "There is no such promo code.")
    if not promo.is_active:
        raise PromoInvalid("inactive", "This promo code is no longer active.")
    if promo.valid_from is not None and now < promo.valid_from:
        raise PromoInvalid("not_started", "This promo code is not valid yet.")
    if promo.valid_until is not None and now >= promo.valid_until:
        raise PromoInvalid("expired", "This promo code has expired.")
    if promo.max_uses is not None and promo.used_count >= promo.max_uses:
        raise PromoInvalid("exhausted", "This promo code has been used up.")
    plan_ids = await _plan_ids(session, promo)
    if plan_ids and plan.id not in plan_ids:
        raise PromoInvalid("not_for_plan", "This promo code does not apply to this plan.")
    if promo.once_per_user and await _already_used(session, promo, user):
        raise PromoInvalid("already_used", "You have already used this promo code.")
    return await _effect(session, promo, price)


async def _effect(session: AsyncSession, promo: PromoCode, price: Money) -> PromoEffect:
    if promo.kind == PromoKind.DAYS:
        return PromoEffect(promo, price, Money.from_minor(0, price.currency), promo.extra_days or 0)
    if promo.kind == PromoKind.PERCENT:
        amount = price.percent_off(promo.percent or 0)
    else:
        fixed = await session.scalar(
            select(PromoCodeAmount.amount_minor).where(
                PromoCodeAmount.promo_code_id == promo.id, PromoCodeAmount.currency == price.currency
            )
        )
        if fixed is None:
            raise PromoInvalid("no_currency", f"This promo code does not apply to payments in {price.currency}.")
        amount = Money.from_minor(max(price.minor - fixed, 0), price.currency)
    if amount.minor <= 0:
        # A free purchase would skip the provider altogether; free time is what "extra days" codes are for.
        raise PromoInvalid("covers_price", "This promo code cannot make the plan free.")
    return PromoEffect(promo, amount, price - amount, 0)


async def hold(session: AsyncSession, promo: PromoCode, *, user: User, payment: Payment) -> None:
    """Take one use for this payment, atomically; raises PromoInvalid if the last use or the user's one use
    was taken meanwhile (by another checkout racing this one)."""
    taken = await session.execute(
        update(PromoCode)
        .where(
            PromoCode.id == promo.id,
            PromoCode.is_active,
            (PromoCode.max_uses.is_(None)) | (PromoCode.used_count < PromoCode.max_uses),
        )
        .values(used_count=PromoCode.used_count + 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise PromoInvalid("exhausted", "This promo code has been used up.")
    try:
        async with session.begin_nested():
            session.add(
                PromoRedemption(
                    promo_code_id=promo.id,
                    user_id=user.id,
                    payment_id=payment.id,
                    status=RedemptionStatus.HELD,
                    once_per_user=promo.once_per_user,
                )
            )
            await session.flush()
    except IntegrityError:
        raise PromoInvalid("already_used", "You have already used this promo code.") from None


async def _redemption(session: AsyncSession, payment: Payment) -> PromoRedemption | None:
    return await session.scalar(
        select(PromoRedemption).where(PromoRedemption.payment_id == payment.id).with_for_update()
    )


async def redeem(session: AsyncSession, payment: Payment) -> None:
    """The payment succeeded: its hold becomes a redemption. A hold already released (the checkout expired,
    then the customer paid anyway) is honoured as paid but not re-counted: the use may belong to someone else."""
    redemption = await _redemption(session, payment)
    if redemption is not None and redemption.status == RedemptionStatus.HELD:
        redemption.status = RedemptionStatus.REDEEMED


async def release(session: AsyncSession, payment: Payment) -> None:
    """The checkout ended unpaid: give the use back."""
    redemption = await _redemption(session, payment)
    if redemption is None or redemption.status != RedemptionStatus.HELD:
        return
    redemption.status = RedemptionStatus.RELEASED
    await session.execute(
        update(PromoCode)
        .where(PromoCode.id == redemption.promo_code_id, PromoCode.used_count > 0)
        .values(used_count=PromoCode.used_count - 1)
        .execution_options(synchronize_session=False)
    )
