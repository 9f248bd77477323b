"""The plans' shapes in the admin JSON API. Prices are given both as integer minor units (exact, what we store)
and as a decimal string in units; input amounts are decimal strings (or whole numbers), never floats. Input
fields are loosely typed on purpose: the domain (app/plans/service.py) checks them, so the form and the API
refuse the same value with the same message."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.kit.money import Money
from app.models import Plan, TrafficStrategy
from app.plans.service import BULLETS


class PlanIn(BaseModel):
    """A new plan (every field but the optional ones), or an edit (only the fields to change)."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(None, max_length=64, examples=["month"])
    name: dict[str, str] | None = Field(None, examples=[{"ru": "Месяц", "en": "Month"}])
    duration_days: int | None = Field(None, examples=[30])
    discount_percent: str | int | None = Field(None, examples=["15"], description="0 ≤ x < 100, two decimals.")
    traffic_limit_bytes: int | None = Field(None, description="Null: unlimited.")
    traffic_strategy: TrafficStrategy | None = None
    device_limit: int | None = Field(None, description="Only where the servers' panels enforce it (Remnawave).")
    panel_squads: list[str] | None = Field(None, description="Remnawave internal squads; null: the server's own.")
    features: dict[str, list[str]] | None = Field(None, description="Feature lines per language.")
    prices: dict[str, str | int] | None = Field(
        None, examples=[{"RUB": "199.00", "XTR": 150}], description="Currency → amount in units; every price."
    )


class OrderIn(BaseModel):
    order: list[int] = Field(max_length=1000, description="The ids of every plan on sale, in the new order.")


class PriceOut(BaseModel):
    currency: str
    amount_minor: int
    amount: str


class PlanOut(BaseModel):
    id: int
    code: str
    name: dict[str, str]
    duration_days: int
    discount_percent: str
    traffic_limit_bytes: int | None
    traffic_strategy: str
    device_limit: int | None
    panel_squads: list[str] | None
    features: dict[str, list[str]]
    prices: list[PriceOut]
    is_active: bool
    sort_order: int
    created_at: datetime | None

    @classmethod
    def of(cls, plan: Plan, prices: dict[str, int]) -> PlanOut:
        return cls(
            id=plan.id,
            code=plan.code,
            name=dict(plan.name),
            duration_days=plan.duration_days,
            discount_percent=str(plan.discount_percent),
            traffic_limit_bytes=plan.traffic_limit_bytes,
            traffic_strategy=TrafficStrategy(plan.traffic_strategy).value,
            device_limit=plan.device_limit,
            panel_squads=list(plan.panel_squads) if plan.panel_squads else None,
            features=dict((plan.features or {}).get(BULLETS) or {}),
            prices=[
                PriceOut(currency=currency, amount_minor=minor, amount=str(Money.from_minor(minor, currency).amount))
                for currency, minor in prices.items()
            ],
            is_active=plan.is_active,
            sort_order=plan.sort_order,
            created_at=plan.created_at,
        )
