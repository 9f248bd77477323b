"""/admin/experiments: the list, a new experiment (price of a plan or a text, two or more weighted variants),
one experiment's results per variant (exposed, converted, rate with its 95 % interval, probability of beating the
control) and its start and stop. Routes parse and call app/experiments/service.py (validated, audited); a refusal
is shown beside its field with nothing changed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.experiments import views
from app.admin.forms import undo
from app.admin.rendering import is_htmx, redirect, render, translate
from app.deps import DbSession
from app.experiments import service, stats
from app.inbound import RowId
from app.kit.errors import AppError
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import available_languages
from app.models import Plan

router = APIRouter(prefix="/experiments")


@router.get("", response_class=HTMLResponse, dependencies=[require("experiments:write")])
async def experiments_page(request: Request, db: DbSession) -> HTMLResponse:
    found = await service.list_experiments(db)
    context = {"section": "experiments", "experiments": found, "state": service.state}
    return render(request, "admin/experiments/list.html", context)


async def _new_page(
    request: Request, db: AsyncSession, form: dict[str, str], errors: dict[str, str], *, status: int = 200
) -> HTMLResponse:
    plans = list((await db.scalars(select(Plan).order_by(Plan.sort_order, Plan.id))).all())
    context = {
        "section": "experiments",
        "values": form,
        "errors": errors,
        "plans": plans,
        "languages": available_languages(),
        "rows": range(1, views.VARIANT_ROWS + 1),
    }
    return render(request, "admin/experiments/new.html", context, status_code=status)


@router.get("/new", response_class=HTMLResponse, dependencies=[require("experiments:write")])
async def new_experiment(request: Request, db: DbSession) -> HTMLResponse:
    defaults = {"kind": "price", "conversion_days": "14", "v1.key": "control", "v1.weight": "50", "v2.weight": "50"}
    return await _new_page(request, db, defaults, {})


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("experiments:write")]
) -> Response:
    form = {key: str(value) for key, value in (await request.form()).items() if key != "csrf_token"}
    try:
        created = await service.create(db, views.draft_from_form(form), viewer.actor)
    except FieldInvalid as exc:
        await undo(request, db)
        return await _new_page(request, db, form, {exc.field: exc.message}, status=422)
    await db.commit()
    return redirect(request, f"/admin/experiments/{created.id}")


async def _detail(
    request: Request,
    db: AsyncSession,
    experiment_id: int,
    *,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    experiment = await service.get(db, experiment_id)
    context = {
        "section": "experiments",
        "e": experiment,
        "state": service.state(experiment),
        "results": await stats.results(db, experiment),
        "errors": errors or {},
    }
    return render(request, "admin/experiments/detail.html", context, toasts=toasts, status_code=status)


@router.get("/{experiment_id}", response_class=HTMLResponse, dependencies=[require("experiments:write")])
async def experiment_page(request: Request, db: DbSession, experiment_id: RowId) -> HTMLResponse:
    return await _detail(request, db, experiment_id)


async def _change(request: Request, db: AsyncSession, viewer: StaffViewer, experiment_id: int, name: str) -> Response:
    action = service.start if name == "start" else service.stop
    try:
        await action(db, experiment_id, viewer.actor)
        await db.flush()
    except AppError as exc:
        await undo(request, db)
        return await _detail(request, db, experiment_id, errors={"__all__": exc.message}, status=exc.status_code)
    await db.commit()
    if not is_htmx(request):
        return redirect(request, f"/admin/experiments/{experiment_id}")
    toast = translate(request, f"admin_experiments.done.{name}")
    return await _detail(request, db, experiment_id, toasts=[("success", toast)])


@router.post("/{experiment_id}/start", response_class=HTMLResponse)
async def start(
    request: Request,
    db: DbSession,
    experiment_id: RowId,
    viewer: Annotated[StaffViewer, require("experiments:write")],
) -> Response:
    return await _change(request, db, viewer, experiment_id, "start")


@router.post("/{experiment_id}/stop", response_class=HTMLResponse)
async def stop(
    request: Request,
    db: DbSession,
    experiment_id: RowId,
    viewer: Annotated[StaffViewer, require("experiments:write")],
) -> Response:
    return await _change(request, db, viewer, experiment_id, "stop")
