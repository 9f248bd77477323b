"""A shop with plans, a demo panel server and the demo payment provider, and the steps the payments tests
take in it (a demo checkout, a provider update, reading rows back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import transaction
from app.kit.money import Money
from app.models import Payment, Plan, PlanPrice, PromoCode, PromoCodeAmount, PromoKind, User
from app.payments.orders import CheckoutRequest, start_checkout
from app.payments.providers.base import PaymentState, ProviderUpdate
from app.payments.service import Outcome, apply_update
from app.resources import Resources
from tests.factories import add_server

PRICES = {
    "month": {"RUB": 19900, "USD": 299, "XTR": 150, "INR": 24900, "IDR": 4500000},
    "year": {"RUB": 179000, "USD": 2699},
}


@dataclass
class Shop:
    resources: Resources
    db: AsyncSession
    plans: dict[str, Plan]

    @property
    def settings(self):
        return self.resources.settings

    async def user(self, telegram_id: int, **fields: Any) -> User:
        user = User(telegram_id=telegram_id, referral_code=f"r{telegram_id}", language="ru", **fields)
        self.db.add(user)
        await self.db.commit()
        return user

    async def promo(self, code: str, kind: PromoKind, **fields: Any) -> PromoCode:
        amounts: dict[str, int] = fields.pop("amounts", {})
        promo = PromoCode(code=code, kind=kind, **fields)
        self.db.add(promo)
        await self.db.flush()
        self.db.add_all(PromoCodeAmount(promo_code_id=promo.id, currency=c, amount_minor=a) for c, a in amounts.items())
        await self.db.commit()
        return promo


async def seed_plans(db: AsyncSession) -> dict[str, Plan]:
    plans = {}
    for order, (code, days) in enumerate((("month", 30), ("year", 365))):
        plan = Plan(code=code, name={"ru": code, "en": code}, duration_days=days, sort_order=order, device_limit=3)
        db.add(plan)
        await db.flush()
        db.add_all(PlanPrice(plan_id=plan.id, currency=c, amount_minor=a) for c, a in PRICES[code].items())
        plans[code] = plan
    await add_server(db)
    await db.commit()
    return plans


async def checkout(shop: Shop, user: User, plan: str = "month", **fields: object) -> Payment:
    async with shop.resources.sessionmaker() as session:
        request = CheckoutRequest(plan=plan, provider="demo", **fields)  # type: ignore[arg-type]
        return await start_checkout(
            session, shop.resources.payments, shop.settings, user, request, return_url="http://t/app/payments/{payment}"
        )


def paid(payment: Payment, *, event: str = "e1", amount: Money | None = None, **fields: object) -> ProviderUpdate:
    return ProviderUpdate(
        event_id=event,
        kind="test",
        state=fields.pop("state", PaymentState.SUCCEEDED),  # type: ignore[arg-type]
        external_id=fields.pop("external_id", payment.external_id),  # type: ignore[arg-type]
        order_id=payment.public_id,
        amount=amount or Money.from_minor(payment.amount_minor, payment.currency),
        **fields,  # type: ignore[arg-type]
    )


async def apply(shop: Shop, update: ProviderUpdate) -> Outcome:
    async with transaction(shop.resources.sessionmaker) as session:
        return await apply_update(session, "demo", update, shop.settings)


async def reload(shop: Shop, model, **where):
    async with shop.resources.sessionmaker() as session:
        return await session.scalar(select(model).filter_by(**where))


async def count(shop: Shop, model, *conditions) -> int:
    async with shop.resources.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
