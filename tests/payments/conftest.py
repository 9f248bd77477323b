"""A shop with plans, a demo panel server and the demo payment provider, for the payments tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Plan, PlanPrice, PromoCode, PromoCodeAmount, PromoKind, User
from app.resources import Resources, open_resources
from tests.conftest import make_settings
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


@pytest.fixture
async def shop(database_url: str, db: AsyncSession) -> AsyncIterator[Shop]:
    settings = make_settings(database_url, demo_payments_enabled=True)
    resources = open_resources(settings)
    try:
        yield Shop(resources, db, await seed_plans(db))
    finally:
        await resources.aclose()
