"""/admin/promo: the codes with their uses, revenue and discount; a new code; one code's editor with its
redemptions (who, with which payment); deactivation. The form is validated by the API's model (PromoDraft):
a refusal shows the form again with the error beside its field (422) and changes nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.forms import parse_form
from app.admin.promo.queries import CodeMoney, list_codes, money_by_code, redemptions
from app.admin.promo.views import HELPERS
from app.admin.rendering import redirect, render
from app.admin.users.schemas import RowId
from app.deps import DbSession
from app.kit.field_errors import FieldInvalid
from app.models import Plan, PlanPrice, PromoKind
from app.promo import staff_actions

router = APIRouter(prefix="/promo")
SCALARS = ("code", "kind", "percent", "extra_days", "max_uses", "valid_from", "valid_until")


async def _form_options(db: AsyncSession, amounts: dict[str, Any]) -> dict[str, Any]:
    plans = (await db.scalars(select(Plan).order_by(Plan.sort_order, Plan.id))).all()
    priced = set((await db.scalars(select(PlanPrice.currency).distinct())).all())
    return {
        "plans": plans,
        "currencies": sorted(priced | set(amounts) | {"RUB"}),
        "kinds": [kind.value for kind in PromoKind],
    }


def _form_values(form: Any) -> dict[str, Any]:
    """The posted form as PromoDraft's input: amount_<CUR> fields become `amounts`, plan checkboxes `plan_ids`."""
    values: dict[str, Any] = {name: str(form.get(name) or "").strip() for name in SCALARS}
    values["amounts"] = {
        key.removeprefix("amount_"): str(value).strip()
        for key, value in form.items()
        if key.startswith("amount_") and str(value).strip()
    }
    values["plan_ids"] = [str(value) for value in form.getlist("plan_ids")]
    values["once_per_user"] = bool(form.get("once_per_user"))
    values["is_active"] = bool(form.get("is_active"))
    return values


async def _editor(
    request: Request,
    db: AsyncSession,
    *,
    promo_id: int | None,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
    toasts: list[tuple[str, str]] | None = None,
) -> HTMLResponse:
    context: dict[str, Any] = {"section": "promo", "promo_id": promo_id, "values": values, "errors": errors or {}}
    context |= await _form_options(db, values.get("amounts") or {})
    if promo_id is not None:
        context["promo"] = await staff_actions.get_promo(db, promo_id)
        context["money"] = (await money_by_code(db, [promo_id])).get(promo_id, CodeMoney())
        context["redemptions"] = await redemptions(db, promo_id)
    return render(request, "admin/promo/edit.html", context | HELPERS, status_code=status_code, toasts=toasts)


@router.get("", response_class=HTMLResponse, dependencies=[require("promo:write")])
async def promo_list(request: Request, db: DbSession) -> Response:
    return render(request, "admin/promo/list.html", {"section": "promo", "rows": await list_codes(db), **HELPERS})


@router.get("/new", response_class=HTMLResponse, dependencies=[require("promo:write")])
async def new_promo(request: Request, db: DbSession) -> Response:
    return await _editor(
        request, db, promo_id=None, values={"kind": "percent", "once_per_user": True, "is_active": True}
    )


async def _save(request: Request, db: AsyncSession, viewer: StaffViewer, promo_id: int | None) -> Response:
    values = _form_values(await request.form())
    draft, errors = parse_form(staff_actions.PromoDraft, values)
    if draft is not None:
        try:
            # A savepoint: a refusal undoes only this attempt, and the signed-in staff row stays loaded.
            async with db.begin_nested():
                if promo_id is None:
                    promo = await staff_actions.create(db, viewer.actor, draft)
                else:
                    promo = await staff_actions.update(db, viewer.actor, promo_id, draft)
        except FieldInvalid as exc:
            errors = {exc.field: exc.message}
        else:
            await db.commit()
            return redirect(request, f"/admin/promo/{promo.id}")
    return await _editor(request, db, promo_id=promo_id, values=values, errors=errors, status_code=422)


@router.post("", response_class=HTMLResponse)
async def create_promo(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("promo:write")]
) -> Response:
    return await _save(request, db, viewer, None)


@router.get("/{promo_id}", response_class=HTMLResponse, dependencies=[require("promo:write")])
async def promo_page(request: Request, db: DbSession, promo_id: RowId) -> Response:
    promo = await staff_actions.get_promo(db, promo_id)
    values = staff_actions.draft_of(
        promo, await staff_actions.amounts_of(db, promo_id), await staff_actions.plans_of(db, promo_id)
    )
    return await _editor(request, db, promo_id=promo_id, values=values)


@router.post("/{promo_id}", response_class=HTMLResponse)
async def update_promo(
    request: Request, db: DbSession, promo_id: RowId, viewer: Annotated[StaffViewer, require("promo:write")]
) -> Response:
    await staff_actions.get_promo(db, promo_id)  # 404 before reading the form
    return await _save(request, db, viewer, promo_id)


@router.post("/{promo_id}/deactivate", response_class=HTMLResponse)
async def deactivate_promo(
    request: Request, db: DbSession, promo_id: RowId, viewer: Annotated[StaffViewer, require("promo:write")]
) -> Response:
    await staff_actions.deactivate(db, viewer.actor, promo_id)
    await db.commit()
    return redirect(request, f"/admin/promo/{promo_id}")
