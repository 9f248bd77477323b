"""The settings page (SPEC §3.7): language, auto-renewal, marketing messages, saved payment methods, linked
browser logins and sessions, and "open in browser" (a one-time link and code for the browser cabinet)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.dependencies import PageViewer, Viewer
from app.auth.login_codes import issue_login
from app.auth.sessions import list_sessions, revoke_session
from app.cabinet.pages import is_htmx, render, renews_by_itself, see_other
from app.cabinet.views import device_of
from app.connect.qr import qr_svg
from app.deps import AppSettings, DbSession, client_ip
from app.inbound import RowId
from app.kit.errors import NotFound, ValidationFailed
from app.kit.i18n import available_languages, translate
from app.payments import orders, pricing
from app.users import preferences

router = APIRouter(prefix="/app/settings", include_in_schema=False)

OnOff = Annotated[str, Form(pattern="^(on|off)$")]


async def _page(
    request: Request, viewer: Viewer, db: DbSession, settings: AppSettings, **extra: object
) -> HTMLResponse:
    user = viewer.user
    subscription = await preferences.current_paid_subscription(db, user)
    sessions = await list_sessions(db, user.id)
    context = {
        "user": user,
        "languages": available_languages(),
        "currencies": await _currencies(request, viewer, db, settings),
        "subscription": subscription,
        "renews": subscription is not None and await renews_by_itself(request, db, subscription),
        "methods": await preferences.payment_methods(db, user),
        "identities": await preferences.identities(db, user),
        "sessions": sessions,
        "session_devices": {item.id: device_of(item.user_agent) for item in sessions},
        "current_session_id": viewer.session.record.id if viewer.session else None,
        "providers": list(request.app.state.oidc_providers.values()),
        **extra,
    }
    return render(request, "cabinet/settings.html", context)


async def _currencies(request: Request, viewer: Viewer, db: DbSession, settings: AppSettings) -> list[str]:
    """The currencies the shop sells in, the customer's own first (the one the checkout opens in)."""
    ordered = pricing.currency_preferences(viewer.user, settings.default_currency)
    return await orders.currencies_sold(db, request.app.state.resources.payments, ordered)


async def _done(request: Request, viewer: Viewer, db: DbSession, settings: AppSettings) -> Response:
    return await _page(request, viewer, db, settings) if is_htmx(request) else see_other("/app/settings")


@router.get("", response_class=HTMLResponse)
async def settings_page(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    return await _page(request, viewer, db, settings)


@router.post("/language", response_model=None)
async def change_language(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, language: Annotated[str, Form()]
) -> Response:
    await preferences.set_language(db, viewer.user, language, ip=client_ip(request))
    request.state.language = viewer.user.language  # the answer is already in the new language
    return await _done(request, viewer, db, settings)


@router.post("/currency", response_model=None)
async def change_currency(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, currency: Annotated[str, Form()]
) -> Response:
    """The same remembered choice as the plan list's currency switch (app/checkout/pages.py)."""
    sold = await _currencies(request, viewer, db, settings)
    try:
        await preferences.set_currency(db, viewer.user, currency, offered=sold, ip=client_ip(request))
    except ValidationFailed as exc:
        message = translate(viewer.user.language, "checkout.currency.unknown", currencies=", ".join(sold))
        response = await _page(request, viewer, db, settings, currency_error=message)
        response.status_code = exc.status_code
        return response
    return await _done(request, viewer, db, settings)


@router.post("/auto-renew", response_model=None)
async def change_auto_renew(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, enabled: OnOff
) -> Response:
    await preferences.set_auto_renew(db, viewer.user, enabled=enabled == "on", ip=client_ip(request))
    return await _done(request, viewer, db, settings)


@router.post("/marketing", response_model=None)
async def change_marketing(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, enabled: OnOff
) -> Response:
    await preferences.set_marketing(db, viewer.user, opted_in=enabled == "on", ip=client_ip(request))
    return await _done(request, viewer, db, settings)


@router.post("/payment-methods/{method_id}/remove", response_model=None)
async def remove_method(
    request: Request, method_id: RowId, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> Response:
    await preferences.remove_payment_method(db, viewer.user, method_id, ip=client_ip(request))
    return await _done(request, viewer, db, settings)


@router.post("/identities/{identity_id}/unlink", response_model=None)
async def unlink(
    request: Request, identity_id: RowId, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> Response:
    await preferences.unlink_identity(db, viewer.user, identity_id, ip=client_ip(request))
    return await _done(request, viewer, db, settings)


@router.post("/sessions/{session_id}/revoke", response_model=None)
async def revoke(
    request: Request, session_id: RowId, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> Response:
    if not await revoke_session(db, viewer.user.id, session_id):
        raise NotFound("This session does not exist or has already ended.")
    return await _done(request, viewer, db, settings)


@router.post("/browser-login", response_class=HTMLResponse)
async def browser_login(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    """A fresh one-time link and code for signing in to the browser cabinet (valid 10 minutes)."""
    issued = await issue_login(db, viewer.user, secret_key=settings.secret_key)
    link = f"{settings.public_base_url}/login/link/{issued.link_token}"
    return await _page(request, viewer, db, settings, login=issued, login_link=link, login_qr=qr_svg(link, title=link))
