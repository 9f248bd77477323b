"""/admin/plans: the plans on sale in the customers' order (arrows to reorder) and the archived ones apart; the
editor (new and existing plan) with prices per currency, limits, squads, feature lines per language and a
preview of the card customers see; archive, unarchive, and delete for a plan nobody ever bought. Routes parse
and render; app/plans/service.py validates, changes and audits. A refused form comes back with the error next
to its field and nothing changed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.forms import undo
from app.admin.plans.views import CURRENCIES, PlanRow, form_data, form_field, form_values, previews, price_texts
from app.admin.rendering import is_htmx, redirect, render, translate
from app.deps import DbSession
from app.inbound import RowId
from app.kit.errors import AppError
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import available_languages
from app.kit.money import Money
from app.models import Plan, TrafficStrategy
from app.plans import service as plans

router = APIRouter(prefix="/plans")


async def _form(request: Request) -> dict[str, str]:
    return {key: str(value) for key, value in (await request.form()).items() if key != "csrf_token"}


# --- the list -------------------------------------------------------------------------------------------------


async def _list(
    request: Request, db: AsyncSession, viewer: StaffViewer, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    found = await plans.all_plans(db)
    prices = await plans.prices_minor(db, [plan.id for plan in found])
    rows = [
        PlanRow(
            plan,
            [Money.from_minor(minor, currency) for currency, minor in prices[plan.id].items()],
            await plans.is_used(db, plan.id),
        )
        for plan in found
    ]
    context = {
        "section": "plans",
        "on_sale": [row for row in rows if row.plan.is_active],
        "archived": [row for row in rows if not row.plan.is_active],
        "price_texts": price_texts,
        "can_edit": viewer.can("settings:write"),
        "error": error,
    }
    return render(request, "admin/plans/list.html", context, status_code=status)


@router.get("", response_class=HTMLResponse)
async def plans_page(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("dashboard:read")]
) -> HTMLResponse:
    return await _list(request, db, viewer)


async def _list_action(request: Request, db: AsyncSession, viewer: StaffViewer, plan_id: int, action: Any) -> Response:
    """An action of the list (move, archive, unarchive, delete): back to the list, or the list with the refusal."""
    plan = await plans.get_plan(db, plan_id, for_update=True)  # a missing plan is a plain 404
    try:
        await action(plan)
        await db.flush()
    except AppError as exc:
        await undo(request, db)
        return await _list(request, db, viewer, error=exc.message, status=exc.status_code)
    await db.commit()
    return await _list(request, db, viewer) if is_htmx(request) else redirect(request, "/admin/plans")


@router.post("/{plan_id}/move", response_class=HTMLResponse)
async def move_plan(
    request: Request, db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    step = (await _form(request)).get("step")

    async def do(plan: Plan) -> None:
        if step not in ("-1", "1"):
            raise FieldInvalid("step", "Move a plan up (-1) or down (1).")
        await plans.move(db, viewer.actor, plan, int(step))

    return await _list_action(request, db, viewer, plan_id, do)


@router.post("/{plan_id}/archive", response_class=HTMLResponse)
async def archive_plan(
    request: Request, db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    async def do(plan: Plan) -> None:
        await plans.set_active(db, viewer.actor, plan, False)

    return await _list_action(request, db, viewer, plan_id, do)


@router.post("/{plan_id}/unarchive", response_class=HTMLResponse)
async def unarchive_plan(
    request: Request, db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    async def do(plan: Plan) -> None:
        await plans.set_active(db, viewer.actor, plan, True)

    return await _list_action(request, db, viewer, plan_id, do)


@router.post("/{plan_id}/delete", response_class=HTMLResponse)
async def delete_plan(
    request: Request, db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    async def do(plan: Plan) -> None:
        await plans.remove(db, viewer.actor, plan)

    return await _list_action(request, db, viewer, plan_id, do)


# --- the editor -----------------------------------------------------------------------------------------------


async def _editor(
    request: Request,
    db: AsyncSession,
    viewer: StaffViewer,
    plan: Plan | None,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    prices = (await plans.prices_minor(db, [plan.id]))[plan.id] if plan is not None else {}
    enforced = await plans.device_limits_offered(db)
    context = {
        "section": "plans",
        "plan": plan,
        "values": values if values is not None else form_values(plan, prices),
        "errors": errors or {},
        "languages": available_languages(),
        "required_name_languages": plans.REQUIRED_NAME_LANGUAGES,
        "currencies": CURRENCIES,
        "strategies": [(strategy.value, strategy.value) for strategy in TrafficStrategy],
        "devices_offered": enforced,
        "previews": previews(plan, [Money.from_minor(m, c) for c, m in prices.items()], enforced) if plan else [],
        "can_edit": viewer.can("settings:write"),
    }
    return render(request, "admin/plans/edit.html", context, toasts=toasts, status_code=status)


@router.get("/new", response_class=HTMLResponse)
async def new_plan(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("settings:write")]
) -> HTMLResponse:
    return await _editor(request, db, viewer, None)


@router.get("/{plan_id}", response_class=HTMLResponse)
async def plan_page(
    request: Request, db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("dashboard:read")]
) -> HTMLResponse:
    return await _editor(request, db, viewer, await plans.get_plan(db, plan_id))


async def _save(request: Request, db: AsyncSession, viewer: StaffViewer, plan: Plan | None) -> Response:
    form = await _form(request)
    data, errors = form_data(form)
    existing = plan.id if plan is not None else None  # read now: a rollback expires the object
    try:
        if errors:
            raise FieldInvalid("traffic_limit_bytes", errors["traffic_limit_gb"])
        if plan is None:
            plan = await plans.create(db, viewer.actor, data)
        else:
            await plans.update(db, viewer.actor, plan, data)
        await db.flush()
    except FieldInvalid as exc:
        await undo(request, db)
        shown = None if existing is None else await plans.get_plan(db, existing)
        return await _editor(
            request, db, viewer, shown, values=form, errors={form_field(exc.field): exc.message}, status=422
        )
    except AppError as exc:
        await undo(request, db)
        shown = None if existing is None else await plans.get_plan(db, existing)
        errors = {"__all__": exc.message}
        return await _editor(request, db, viewer, shown, values=form, errors=errors, status=exc.status_code)
    plan_id = plan.id
    await db.commit()
    if not is_htmx(request):
        return redirect(request, f"/admin/plans/{plan_id}")
    saved = await plans.get_plan(db, plan_id)
    response = await _editor(request, db, viewer, saved, toasts=[("success", translate(request, "admin_plans.saved"))])
    response.headers["hx-push-url"] = f"/admin/plans/{plan_id}"
    return response


@router.post("", response_class=HTMLResponse)
async def create_plan(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    return await _save(request, db, viewer, None)


@router.post("/{plan_id}", response_class=HTMLResponse)
async def update_plan(
    request: Request, db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    return await _save(request, db, viewer, await plans.get_plan(db, plan_id, for_update=True))
