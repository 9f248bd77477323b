"""A shop for the checkout tests: plans priced in several currencies, a demo panel server, the demo payment
provider switched on, and the app served over an in-process transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.kit.http import reset_breakers
from app.models import Payment, Plan, PlanPrice, PromoCode, PromoCodeAmount, PromoKind, User, promo_code_plans
from tests.conftest import make_settings
from tests.factories import add_server
from tests.web import BOT_TOKEN, serve

BASE = "http://t"  # the test client's address, and the shop's public address (return URLs, pay pages)

PRICES = {
    "month": {"RUB": 19900, "USD": 299, "XTR": 150},
    "year": {"RUB": 179000, "USD": 2699},
    "dollar": {"USD": 500},
}


@dataclass
class Shop:
    app: FastAPI
    client: httpx.AsyncClient
    db: AsyncSession
    settings: Settings
    plans: dict[str, Plan]

    async def user(self, telegram_id: int = 777) -> User:
        await self.db.rollback()  # see what the app committed
        user = await self.db.scalar(select(User).where(User.telegram_id == telegram_id))
        assert user is not None
        return user

    async def payments(self) -> list[Payment]:
        """Every payment as the app committed it: detached snapshots, so later rollbacks do not expire them."""
        await self.db.rollback()
        payments = list((await self.db.scalars(select(Payment).order_by(Payment.id))).all())
        for payment in payments:
            self.db.expunge(payment)
        return payments

    async def promo(self, code: str, kind: PromoKind = PromoKind.PERCENT, **fields: Any) -> PromoCode:
        amounts: dict[str, int] = fields.pop("amounts", {})
        plans: list[Plan] = fields.pop("plans", [])
        if kind == PromoKind.PERCENT:
            fields.setdefault("percent", 20)
        promo = PromoCode(code=code, kind=kind, **fields)
        self.db.add(promo)
        await self.db.flush()
        self.db.add_all(PromoCodeAmount(promo_code_id=promo.id, currency=c, amount_minor=a) for c, a in amounts.items())
        await self.db.commit()
        if plans:
            await self.db.execute(
                promo_code_plans.insert(), [{"promo_code_id": promo.id, "plan_id": plan.id} for plan in plans]
            )
            await self.db.commit()
        return promo

    async def count(self, model: type) -> int:
        await self.db.rollback()
        return await self.db.scalar(select(func.count()).select_from(model)) or 0


async def seed_plans(db: AsyncSession) -> dict[str, Plan]:
    plans = {}
    names = {"month": ("1 месяц", "1 month"), "year": ("12 месяцев", "12 months"), "dollar": ("Доллар", "Dollar")}
    for order, (code, days) in enumerate((("month", 30), ("year", 365), ("dollar", 7))):
        ru, en = names[code]
        plan = Plan(
            code=code,
            name={"ru": ru, "en": en},
            duration_days=days,
            sort_order=order,
            device_limit=3,
            discount_percent=25 if code == "year" else 0,
        )
        db.add(plan)
        await db.flush()
        db.add_all(PlanPrice(plan_id=plan.id, currency=c, amount_minor=a) for c, a in PRICES[code].items())
        plans[code] = plan
    retired = Plan(code="old", name={"ru": "Старый", "en": "Retired"}, duration_days=10, is_active=False)
    db.add(retired)
    await db.flush()
    db.add(PlanPrice(plan_id=retired.id, currency="RUB", amount_minor=100))
    await add_server(db)
    await db.commit()
    return plans


ShopFactory = Callable[..., AbstractAsyncContextManager[Shop]]


@pytest.fixture(autouse=True)
def _fresh_breakers() -> None:
    reset_breakers()


@pytest.fixture
def open_shop(database_url: str, db: AsyncSession) -> ShopFactory:
    """`async with open_shop(**settings) as shop:` — a shop with other settings (more providers, none)."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Shop]:
        values: dict[str, Any] = {
            "bot_token": BOT_TOKEN,
            "demo_payments_enabled": True,
            "public_base_url": BASE,
        } | overrides
        settings = make_settings(database_url, **values)
        plans = await seed_plans(db)
        async with serve(settings) as (app, client):
            yield Shop(app, client, db, settings, plans)

    return start


@pytest.fixture
async def shop(open_shop: ShopFactory) -> AsyncIterator[Shop]:
    async with open_shop() as opened:
        yield opened
