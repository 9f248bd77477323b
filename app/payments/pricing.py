"""Prices, computed on the server only (SPEC §5.4): the plan's price in the chosen currency, less a promo code,
plus the code's extra days. The client never sends an amount."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.experiments import service as experiments
from app.kit.errors import NotFound, ValidationFailed
from app.kit.money import Money
from app.models import Plan, PlanPrice, PromoCode, User
from app.promo import service as promo_service

# The currency of the market a language stands for, where the shop sells in it (issue 19): shown first to a
# customer who never chose one. Other languages get the shop's default (Settings.default_currency).
LANGUAGE_CURRENCY = {"ru": "RUB", "hi": "INR", "id": "IDR"}


@dataclass(frozen=True, slots=True)
class Quote:
    plan: Plan
    price: Money  # the plan's price
    amount: Money  # what the customer pays
    discount: Money
    days: int  # the plan's days plus a promo code's extra days
    promo: PromoCode | None


async def active_plans(session: AsyncSession) -> list[Plan]:
    return list((await session.scalars(select(Plan).where(Plan.is_active).order_by(Plan.sort_order, Plan.id))).all())


async def plan_by_code(session: AsyncSession, code: str) -> Plan:
    plan = await session.scalar(select(Plan).where(Plan.code == code, Plan.is_active))
    if plan is None:
        raise NotFound(f"There is no active plan {code!r}.", code="plan_not_found")
    return plan


async def prices_of(session: AsyncSession, plans: list[Plan]) -> dict[int, list[Money]]:
    """Each plan's prices, in the order they were added (the admin's order)."""
    rows = await session.scalars(
        select(PlanPrice).where(PlanPrice.plan_id.in_([plan.id for plan in plans])).order_by(PlanPrice.id)
    )
    prices: dict[int, list[Money]] = {plan.id: [] for plan in plans}
    for row in rows:
        prices[row.plan_id].append(Money.from_minor(row.amount_minor, row.currency))
    return prices


async def customer_prices(session: AsyncSession, plans: list[Plan], user: User) -> dict[int, list[Money]]:
    """`prices_of` as this customer sees them: a running price experiment's variant replaces a plan's price (the
    same lookup `quote` charges by, so the price shown is the price charged)."""
    prices = await prices_of(session, plans)
    for plan in plans:
        shown = []
        for price in prices[plan.id]:
            variant = await experiments.price_for(session, user, plan, price.currency)
            shown.append(price if variant is None else Money.from_minor(variant, price.currency))
        prices[plan.id] = shown
    return prices


async def renewal_prices(session: AsyncSession, plan: Plan, user: User) -> list[Money]:
    """The plan's prices for this customer's automatic renewal: the price experiment's variant they were shown,
    where one runs on the plan and they have one (experiments.renewal_price_for)."""
    prices = []
    for price in (await prices_of(session, [plan]))[plan.id]:
        variant = await experiments.renewal_price_for(session, user, plan, price.currency)
        prices.append(price if variant is None else Money.from_minor(variant, price.currency))
    return prices


def currency_preferences(user: User, default: str) -> list[str]:
    """The currencies this customer would rather pay in, best first: the one they chose, their language's, the
    shop's default. Whichever of them is actually sold (priced and taken by a provider) wins."""
    wanted = [user.currency, LANGUAGE_CURRENCY.get(user.language), default]
    return list(dict.fromkeys(code for code in wanted if code))


def preferred_first(prices: list[Money], preferences: list[str]) -> list[Money]:
    """`prices` in the order of `preferences` (see currency_preferences); the rest keep the admin's order."""
    rank = {code: index for index, code in enumerate(preferences)}
    return sorted(prices, key=lambda price: rank.get(price.currency, len(rank)))


async def quote(
    session: AsyncSession, plan: Plan, currency: str, *, user: User, promo_code: str | None, now: datetime
) -> Quote:
    price_minor = await session.scalar(
        select(PlanPrice.amount_minor).where(PlanPrice.plan_id == plan.id, PlanPrice.currency == currency)
    )
    if price_minor is None:
        raise ValidationFailed(f"The plan has no price in {currency}.", code="currency_not_offered")
    # A price experiment on the plan charges the customer's variant (and records their exposure).
    variant_minor = await experiments.price_for(session, user, plan, currency)
    price = Money.from_minor(price_minor if variant_minor is None else variant_minor, currency)
    if not promo_code or not promo_code.strip():
        return Quote(plan, price, price, Money.from_minor(0, currency), plan.duration_days, None)
    effect = await promo_service.evaluate(session, promo_code, user=user, plan=plan, price=price, now=now)
    return Quote(plan, price, effect.amount, effect.discount, plan.duration_days + effect.extra_days, effect.promo)
