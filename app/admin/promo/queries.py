"""The promo pages' reads: every code with its uses, revenue and discount, and one code's redemptions (who, with
which payment). Revenue follows the finance rule (succeeded payments minus what was refunded,
figures.refunded_minor()); the discount of a payment is the plan price checkout quoted (details.price_minor)
minus what the customer paid."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentStatus, PromoCode, PromoRedemption, RedemptionStatus, User
from app.stats import figures


@dataclass(slots=True)
class CodeMoney:
    """One code's paid payments: count, revenue and discount per currency (minor units)."""

    payments: int = 0
    revenue: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    discount: dict[str, int] = field(default_factory=lambda: defaultdict(int))


async def money_by_code(session: AsyncSession, promo_ids: list[int] | None = None) -> dict[int, CodeMoney]:
    statement = select(
        Payment.promo_code_id, Payment.currency, Payment.amount_minor, figures.refunded_minor(), Payment.details
    ).where(Payment.promo_code_id.is_not(None), Payment.status.in_(figures.PAID_STATUSES))
    if promo_ids is not None:
        statement = statement.where(Payment.promo_code_id.in_(promo_ids))
    result: dict[int, CodeMoney] = defaultdict(CodeMoney)
    for promo_id, currency, amount, refunded, details in await session.execute(statement):
        money = result[promo_id]
        money.payments += 1
        money.revenue[currency] += amount - int(refunded or 0)
        price = (details or {}).get("price_minor")
        if isinstance(price, int) and price > amount:
            money.discount[currency] += price - amount
    return result


@dataclass(frozen=True, slots=True)
class CodeRow:
    promo: PromoCode
    money: CodeMoney


async def list_codes(session: AsyncSession) -> list[CodeRow]:
    promos = (await session.scalars(select(PromoCode).order_by(PromoCode.is_active.desc(), PromoCode.id.desc()))).all()
    money = await money_by_code(session, [promo.id for promo in promos])
    return [CodeRow(promo, money.get(promo.id, CodeMoney())) for promo in promos]


@dataclass(frozen=True, slots=True)
class RedemptionRow:
    id: int
    status: RedemptionStatus
    created_at: datetime
    user: User
    payment: Payment | None

    @property
    def paid(self) -> bool:
        return self.payment is not None and self.payment.status in figures.PAID_STATUSES

    @property
    def refunded(self) -> bool:
        return self.payment is not None and self.payment.status == PaymentStatus.REFUNDED


async def redemptions(session: AsyncSession, promo_id: int, limit: int = 500) -> list[RedemptionRow]:
    """The code's redemptions and holds, newest first (at most `limit`)."""
    rows = await session.execute(
        select(PromoRedemption, User, Payment)
        .join(User, User.id == PromoRedemption.user_id)
        .outerjoin(Payment, Payment.id == PromoRedemption.payment_id)
        .where(PromoRedemption.promo_code_id == promo_id)
        .order_by(PromoRedemption.created_at.desc(), PromoRedemption.id.desc())
        .limit(limit)
    )
    return [RedemptionRow(r.id, r.status, r.created_at, user, payment) for r, user, payment in rows]
