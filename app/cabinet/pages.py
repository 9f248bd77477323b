"""The customer's home, trial and usage pages (SPEC §3.1, §3.2, §3.8). Inside Telegram and in the browser
cabinet alike: the same routes, the same templates, authenticated by PageViewer."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import PageViewer, Viewer
from app.cabinet.service import overview
from app.cabinet.usage import usage_report
from app.config import Settings
from app.deps import AppSettings, DbSession, client_ip
from app.models import Subscription
from app.runtime_settings import service as runtime_settings
from app.subscriptions.renewal_methods import renewal_of
from app.subscriptions.trial import activate_trial

router = APIRouter(prefix="/app", include_in_schema=False)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, template: str, context: dict, **kwargs: object) -> HTMLResponse:
    return request.app.state.templates.response(request, template, context, **kwargs)


def see_other(url: str) -> Response:
    """After a plain (JavaScript-free) form post: show the result page instead of a resubmittable POST."""
    return RedirectResponse(url, status_code=303)


async def renews_by_itself(request: Request, db: AsyncSession, subscription: Subscription | None) -> bool:
    """Auto-renewal is on and something can actually renew it (a saved method); "on" alone would promise a
    renewal that cannot happen."""
    if subscription is None or not subscription.auto_renew or subscription.is_trial:
        return False
    return await renewal_of(db, request.app.state.resources.payments, subscription.user_id) is not None


async def _home(
    request: Request, viewer: Viewer, db: AsyncSession, settings: Settings, **kwargs: object
) -> HTMLResponse:
    payments = request.app.state.resources.payments
    trial_days = runtime_settings.snapshot(db, settings).trial_days
    ov = await overview(db, viewer.user, trial_days=trial_days, payments=payments)
    return render(request, "cabinet/home.html", {"ov": ov, "trial_days": trial_days}, **kwargs)


@router.get("", response_class=HTMLResponse)
async def home(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    return await _home(request, viewer, db, settings)


@router.post("/trial", response_model=None)
async def start_trial(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> HTMLResponse | Response:
    trial_days = runtime_settings.snapshot(db, settings).trial_days
    await activate_trial(db, viewer.user, trial_days=trial_days, ip=client_ip(request))
    if not is_htmx(request):
        return see_other("/app")
    return await _home(request, viewer, db, settings, block="status_card")


@router.get("/usage", response_class=HTMLResponse)
async def usage(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    report = await usage_report(db, viewer.user, days=30, zone=settings.zone)
    return render(request, "cabinet/usage.html", {"report": report, "period": timedelta(days=30)})
