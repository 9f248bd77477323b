"""/admin: the dashboard. Its live part refreshes itself every 10 s from /admin/dashboard/live (the same
template's `live` block), the charts switch period through /admin/dashboard/growth (its `growth` block), so a
refresh computes only what it shows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.dashboard.views import growth_context, live_context
from app.admin.rendering import render
from app.deps import AppSettings, DbSession
from app.kit.clock import utcnow
from app.kit.i18n import Translator
from app.kit.templating import Templates
from app.runtime_settings import service as runtime_settings
from app.stats.overview import GROWTH_PERIODS

router = APIRouter()
TEMPLATE = "admin/dashboard/index.html"


def _translator(request: Request) -> Translator:
    return Templates.base_context(request)["_"]


def _days(raw: str | None) -> tuple[int, str | None]:
    """The chart period from the query string; a wrong one falls back to 30 days with a message saying why."""
    if raw is None or raw == "":
        return GROWTH_PERIODS[0], None
    if raw.isdigit() and int(raw) in GROWTH_PERIODS:
        return int(raw), raw
    return GROWTH_PERIODS[0], raw


async def _growth(
    request: Request, db: DbSession, settings: AppSettings, viewer: StaffViewer, raw: str | None
) -> dict[str, Any]:
    days, given = _days(raw)
    context = await growth_context(
        db,
        viewer,
        utcnow(),
        days,
        runtime_settings.snapshot(db, settings).reporting_currency,
        _translator(request),
    )
    if given is not None and str(days) != given:
        context["days_error"] = _translator(request)(
            "admin_dashboard.bad_period", periods=", ".join(map(str, GROWTH_PERIODS))
        )
    return context


async def dashboard(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    viewer: Annotated[StaffViewer, require("dashboard:read")],
    days: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    _ = _translator(request)
    live = await live_context(
        db, viewer, utcnow(), runtime_settings.snapshot(db, settings).reporting_currency, _, settings.zone
    )
    growth = await _growth(request, db, settings, viewer, days)
    status = 422 if "days_error" in growth else 200
    return render(request, TEMPLATE, {"section": "dashboard", **live, **growth}, status_code=status)


@router.get("/dashboard/live", response_class=HTMLResponse)
async def dashboard_live(
    request: Request, db: DbSession, settings: AppSettings, viewer: Annotated[StaffViewer, require("dashboard:read")]
) -> Response:
    live = await live_context(
        db,
        viewer,
        utcnow(),
        runtime_settings.snapshot(db, settings).reporting_currency,
        _translator(request),
        settings.zone,
    )
    return render(request, TEMPLATE, live, block="live")


@router.get("/dashboard/growth", response_class=HTMLResponse)
async def dashboard_growth(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    viewer: Annotated[StaffViewer, require("dashboard:read")],
    days: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    growth = await _growth(request, db, settings, viewer, days)
    return render(request, TEMPLATE, growth, block="growth", status_code=422 if "days_error" in growth else 200)


def install(pages: APIRouter) -> None:
    """Add the dashboard to the admin's page router. /admin itself is the admin router's own root, an empty path,
    which FastAPI accepts on a router with a prefix but not inside an included router."""
    pages.add_api_route("", dashboard, methods=["GET"], response_class=HTMLResponse)
    pages.include_router(router)
