"""/admin/providers: one card per payment provider — on/off, its credentials (a secret is never put back in the
page: a blank field keeps it), its options, the webhook URL to paste into the provider's dashboard, the last
webhook verified, and "test connection" (with the values typed, before saving). Routes parse and render;
app/payments/provider_settings.py validates, stores (encrypted) and audits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.forms import undo
from app.admin.providers.views import provider_views
from app.admin.rendering import render, translate
from app.deps import DbSession
from app.kit.errors import AppError
from app.kit.field_errors import FieldInvalid
from app.payments import provider_settings
from app.payments.registry import check_connection

router = APIRouter(prefix="/providers")

ProviderName = Annotated[str, Path(max_length=32, pattern=r"^[a-z]+$")]
SWITCHES = {"env": None, "on": True, "off": False}


async def _page(
    request: Request,
    db: AsyncSession,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    tests: dict[str, Any] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    views = await provider_views(db, request.app.state.settings, request.app.state.resources.payments)
    context = {"section": "providers", "providers": views, "errors": errors or {}, "tests": tests or {}}
    return render(request, "admin/providers/list.html", context, toasts=toasts, status_code=status)


@router.get("", response_class=HTMLResponse, dependencies=[require("settings:write")])
async def providers_page(request: Request, db: DbSession) -> HTMLResponse:
    return await _page(request, db)


def _changes(name: str, form: dict[str, str]) -> tuple[Any, dict[str, Any], list[str]]:
    """The form as the domain's input: the switch, the values to set, the fields to reset to the environment.
    A blank secret keeps the stored one; a blank text field goes back to the environment's value."""
    switch = form.get("enabled", "env")
    if switch not in SWITCHES:
        raise FieldInvalid("enabled", "Choose on, off, or as the environment decides.")
    values: dict[str, Any] = {}
    reset: list[str] = []
    for field in provider_settings.known(name):
        if field.key not in form and f"reset_{field.key}" not in form:
            continue  # not in this form: left as it is
        raw = form.get(field.key, "")
        if form.get(f"reset_{field.key}") == "1" or (field.kind == "bool" and raw == "env"):
            reset.append(field.key)
        elif field.kind == "bool":
            if raw not in ("on", "off"):
                raise FieldInvalid(field.key, "Choose on, off, or as the environment decides.")
            values[field.key] = raw == "on"
        elif field.kind == "secret":
            if raw.strip():
                values[field.key] = raw
        elif raw.strip():
            values[field.key] = raw
        else:
            reset.append(field.key)
    return SWITCHES[switch], values, reset


async def _form(request: Request) -> dict[str, str]:
    return {key: str(value) for key, value in (await request.form()).items() if key != "csrf_token"}


@router.post("/{name}", response_class=HTMLResponse)
async def save_provider(
    request: Request, db: DbSession, name: ProviderName, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    form = await _form(request)
    try:
        enabled, values, reset = _changes(name, form)
        await provider_settings.update(
            db, viewer.actor, request.app.state.settings, name, enabled=enabled, values=values, reset=reset
        )
        await db.flush()
    except FieldInvalid as exc:
        await undo(request, db)
        return await _page(request, db, errors={name: {exc.field: exc.message}}, status=422)
    except AppError as exc:
        await undo(request, db)
        return await _page(request, db, errors={name: {"__all__": exc.message}}, status=exc.status_code)
    await db.commit()
    await request.app.state.resources.payments.reload(db)
    return await _page(request, db, toasts=[("success", translate(request, "admin_providers.saved"))])


@router.post("/{name}/test", response_class=HTMLResponse)
async def test_provider(
    request: Request, db: DbSession, name: ProviderName, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    """Test with the values typed in the card (blank secrets: the stored ones); nothing is saved."""
    form = await _form(request)
    try:
        _, values, _ = _changes(name, form)
        result = await check_connection(db, request.app.state.settings, name, values)
    except FieldInvalid as exc:
        return await _page(request, db, errors={name: {exc.field: exc.message}}, status=422)
    return await _page(request, db, tests={name: result})
