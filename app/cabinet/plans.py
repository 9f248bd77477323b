"""The plan chooser that "pay" and "extend" lead to (SPEC §3.4). It lists the active plans with their prices;
the payment step itself belongs to checkout (payments issue), so until then the page says how to pay."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from app.auth.dependencies import PageViewer
from app.cabinet.pages import render
from app.deps import DbSession
from app.kit.money import Money
from app.models import Plan, PlanPrice

router = APIRouter(prefix="/app", include_in_schema=False)

# The price shown first for each language; others follow in the order the plan lists them.
PREFERRED_CURRENCY = {"ru": "RUB", "en": "USD"}


@router.get("/checkout", response_class=HTMLResponse)
async def choose_plan(request: Request, viewer: PageViewer, db: DbSession) -> HTMLResponse:
    plans = (await db.scalars(select(Plan).where(Plan.is_active).order_by(Plan.sort_order, Plan.id))).all()
    prices = (await db.scalars(select(PlanPrice).where(PlanPrice.plan_id.in_([plan.id for plan in plans])))).all()
    preferred = PREFERRED_CURRENCY.get(viewer.user.language, "USD")
    offers = []
    for plan in plans:
        own = sorted((p for p in prices if p.plan_id == plan.id), key=lambda price: price.currency != preferred)
        offers.append((plan, [Money.from_minor(price.amount_minor, price.currency) for price in own]))
    return render(request, "cabinet/plans.html", {"offers": offers})
