"""/admin/settings: the runtime settings (app/runtime_settings) in one form, each beside its env default, with
a reset to that default. A bad value is shown next to its field and nothing is saved (the service validates
every field before writing any)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.forms import parse_form
from app.admin.rendering import render, translate
from app.admin.settings.schemas import RateIn
from app.admin.settings.views import grouped
from app.deps import AppSettings, DbSession
from app.kit.clock import utcnow
from app.kit.field_errors import FieldInvalid
from app.runtime_settings import service
from app.runtime_settings.registry import BY_KEY
from app.stats import rates

router = APIRouter(prefix="/settings")
PERMISSION = "settings:write"


async def _page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    rate_form: dict[str, str] | None = None,
    rate_errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    entries = await service.entries(db, settings)
    quote = (await service.current(db, settings)).reporting_currency
    context = {
        "section": "settings",
        "groups": grouped(entries, form),
        "errors": errors or {},
        "quote": quote,
        "rates": await rates.recent_rates(db, quote),
        "rate_form": rate_form or {},
        "rate_errors": rate_errors or {},
    }
    return render(request, "admin/settings/index.html", context, toasts=toasts, status_code=status)


@router.get("", response_class=HTMLResponse, dependencies=[require(PERMISSION)])
async def settings_page(request: Request, db: DbSession, settings: AppSettings) -> HTMLResponse:
    return await _page(request, db, settings)


@router.post("", response_class=HTMLResponse)
async def save_settings(
    request: Request, db: DbSession, settings: AppSettings, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    data = await request.form()
    # Every registry key is on the form; an unticked checkbox sends nothing, which means "off".
    raw = {key: str(data.get(key, "")) for key in BY_KEY}
    try:
        await service.update(db, viewer.actor, settings, raw)
    except FieldInvalid as exc:
        return await _page(request, db, settings, form=raw, errors={exc.field: exc.message}, status=422)
    return await _page(request, db, settings, toasts=[("success", translate(request, "admin_settings.saved"))])


@router.post("/{key}/reset", response_class=HTMLResponse)
async def reset_setting(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    key: str,
    viewer: Annotated[StaffViewer, require(PERMISSION)],
) -> Response:
    if key not in BY_KEY:
        return await _page(request, db, settings, errors={"__all__": f"Unknown setting {key[:64]!r}."}, status=404)
    await service.update(db, viewer.actor, settings, {}, reset=(key,))
    return await _page(request, db, settings, toasts=[("success", translate(request, "admin_settings.reset_done"))])


@router.post("/rates", response_class=HTMLResponse)
async def add_rate(
    request: Request, db: DbSession, settings: AppSettings, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    """A dated exchange rate into the reporting currency (replacing that day's, if any)."""
    data = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
    parsed, errors = parse_form(RateIn, data)
    if parsed is not None:
        quote = (await service.current(db, settings)).reporting_currency
        try:
            await rates.staff_set_rate(db, viewer.actor, quote=quote, today=utcnow().date(), **parsed.model_dump())
        except FieldInvalid as exc:
            errors = {exc.field: exc.message}
    if errors:
        return await _page(request, db, settings, rate_form=data, rate_errors=errors, status=422)
    return await _page(request, db, settings, toasts=[("success", translate(request, "admin_settings.rate_saved"))])
