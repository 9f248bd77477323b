"""GET/POST /api/admin/promo and PUT/DELETE /api/admin/promo/{id}: the promo editor's second face, with the same
model (PromoDraft), the same rules and the same audit rows. DELETE deactivates: a code that customers used is
kept with its redemptions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.promo.queries import CodeMoney, list_codes, money_by_code
from app.admin.users.schemas import RowId
from app.deps import DbSession
from app.kit.money import Money
from app.models import PromoCode
from app.promo import staff_actions
from app.promo.staff_actions import PromoDraft

router = APIRouter(prefix="/promo")


class PromoOut(BaseModel):
    id: int
    code: str
    kind: str
    percent: str | None
    amounts: dict[str, str]  # major units per currency, as entered
    extra_days: int | None
    max_uses: int | None
    used_count: int
    once_per_user: bool
    valid_from: datetime | None
    valid_until: datetime | None
    plan_ids: list[int]
    is_active: bool
    paid_payments: int
    revenue_minor: dict[str, int]  # succeeded payments minus refunds, per currency
    discount_minor: dict[str, int]

    @classmethod
    def of(cls, promo: PromoCode, amounts: dict[str, int], plan_ids: list[int], money: CodeMoney) -> PromoOut:
        return cls(
            id=promo.id,
            code=promo.code,
            kind=promo.kind.value,
            percent=str(promo.percent) if promo.percent is not None else None,
            amounts={currency: str(Money.from_minor(minor, currency).amount) for currency, minor in amounts.items()},
            extra_days=promo.extra_days,
            max_uses=promo.max_uses,
            used_count=promo.used_count,
            once_per_user=promo.once_per_user,
            valid_from=promo.valid_from,
            valid_until=promo.valid_until,
            plan_ids=plan_ids,
            is_active=promo.is_active,
            paid_payments=money.payments,
            revenue_minor=dict(money.revenue),
            discount_minor=dict(money.discount),
        )


async def _out(db: DbSession, promo: PromoCode) -> PromoOut:
    money = (await money_by_code(db, [promo.id])).get(promo.id, CodeMoney())
    amounts, plans = await staff_actions.amounts_of(db, promo.id), await staff_actions.plans_of(db, promo.id)
    return PromoOut.of(promo, amounts, plans, money)


@router.get("", response_model=list[PromoOut], dependencies=[require("promo:write")])
async def list_promo(db: DbSession) -> list[PromoOut]:
    """Every code, active ones first, with its uses, revenue and discount."""
    rows = await list_codes(db)
    return [
        PromoOut.of(
            row.promo,
            await staff_actions.amounts_of(db, row.promo.id),
            await staff_actions.plans_of(db, row.promo.id),
            row.money,
        )
        for row in rows
    ]


@router.post("", response_model=PromoOut, status_code=201)
async def create_promo(
    db: DbSession, draft: PromoDraft, viewer: Annotated[StaffViewer, require("promo:write")]
) -> PromoOut:
    promo = await staff_actions.create(db, viewer.actor, draft)
    out = await _out(db, promo)
    await db.commit()
    return out


@router.put("/{promo_id}", response_model=PromoOut)
async def update_promo(
    db: DbSession, promo_id: RowId, draft: PromoDraft, viewer: Annotated[StaffViewer, require("promo:write")]
) -> PromoOut:
    promo = await staff_actions.update(db, viewer.actor, promo_id, draft)
    out = await _out(db, promo)
    await db.commit()
    return out


@router.delete("/{promo_id}", response_model=PromoOut)
async def deactivate_promo(
    db: DbSession, promo_id: RowId, viewer: Annotated[StaffViewer, require("promo:write")]
) -> PromoOut:
    promo = await staff_actions.deactivate(db, viewer.actor, promo_id)
    out = await _out(db, promo)
    await db.commit()
    return out
