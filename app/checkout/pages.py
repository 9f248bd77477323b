"""The checkout pages (SPEC §3.4): plan → promo code (quoted live) → payment method → the provider → a waiting
page that updates itself until the webhook lands → success with the new end date and a receipt. Inside Telegram
and in the browser cabinet alike; every form also works as a plain POST."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependencies import PageViewer, Viewer
from app.cabinet.pages import is_htmx, render, see_other
from app.checkout.views import (
    PaymentView,
    PlanChoice,
    parse_option,
    payment_view,
    plan_choice,
    return_url,
    sends_to_provider_page,
)
from app.config import Settings
from app.connect.qr import qr_svg
from app.deps import AppSettings, DbSession, client_ip
from app.kit.clock import utcnow
from app.kit.errors import AppError, NotFound, ValidationFailed
from app.kit.formatting import money_text, zone_of
from app.kit.i18n import translate
from app.kit.money import Money
from app.models import PaymentStatus, Plan
from app.payments import orders, pricing
from app.payments.orders import CheckoutRequest, start_checkout
from app.payments.registry import PaymentRegistry
from app.promo.service import PromoInvalid
from app.provisioning import service as provisioning
from app.runtime_settings import service as runtime_settings
from app.users import preferences

router = APIRouter(prefix="/app", include_in_schema=False)

OptionalField = Annotated[str | None, Form()]


def _providers(request: Request) -> PaymentRegistry:
    return request.app.state.resources.payments


def error_message(language: str, exc: AppError) -> str:
    """The customer's own words for a checkout error: a translation by its code, else the service's message."""
    key = f"checkout.promo.{exc.reason}" if isinstance(exc, PromoInvalid) else f"checkout.error.{exc.code}"
    text = translate(language, key)
    return exc.message if text == key else text


def method_label(language: str, provider: str, method: str | None) -> str:
    """ "YooKassa · SBP"-style name of how a payment was (or will be) made."""
    name = translate(language, f"checkout.method.{provider}")
    if name == f"checkout.method.{provider}":
        name = provider
    if method:
        key = f"checkout.method.{provider}.{method}"
        sub = translate(language, key)
        if sub == key:
            sub = translate(language, f"checkout.paid_with.{method}")
            sub = method if sub == f"checkout.paid_with.{method}" else sub
        if sub != name:
            return f"{name} · {sub}"
    return name


def _helpers(viewer: Viewer, settings: Settings, support_username: str) -> dict[str, Any]:
    language = viewer.user.language
    return {
        "support_username": support_username,  # /admin/settings may have changed it since start-up
        "money": lambda value: money_text(value, language) if isinstance(value, Money) else "—",
        "method_label": lambda provider, method=None: method_label(language, provider, method),
        "zone": zone_of(viewer.user.timezone, settings.zone),
    }


def _preferences(viewer: Viewer, settings: Settings) -> list[str]:
    """The customer's currencies, best first: the one they chose, their language's, the shop's default."""
    return pricing.currency_preferences(viewer.user, settings.default_currency)


# --- step 1: the plans -------------------------------------------------------------------------------------


async def _plan_list(
    request: Request,
    viewer: Viewer,
    db: DbSession,
    settings: Settings,
    *,
    offers: list[orders.Offer] | None = None,
    error_message: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Every plan priced in one currency: the one the customer chose, else their language's (a plan not priced
    in it shows its next best price, the one its own page will charge)."""
    ordered = _preferences(viewer, settings)
    if offers is None:
        offers = await orders.offers(db, _providers(request), ordered, user=viewer.user)
    currencies = orders.sold_currencies(offers, ordered)
    context = {
        "offers": offers,
        "devices_enforced": await provisioning.device_limits_enforced(db, viewer.user.id),
        "currencies": currencies,
        "shown_currency": currencies[0] if currencies else None,
        "error_message": error_message,
        **_helpers(viewer, settings, runtime_settings.snapshot(db, settings).support_username),
    }
    return render(request, "checkout/plans.html", context, status_code=status_code)


@router.get("/checkout", response_class=HTMLResponse)
async def choose_plan(request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings) -> HTMLResponse:
    return await _plan_list(request, viewer, db, settings)


@router.post("/checkout/currency", response_model=None)
async def switch_currency(
    request: Request, viewer: PageViewer, db: DbSession, settings: AppSettings, currency: Annotated[str, Form()]
) -> Response:
    """Show and charge every plan in another currency from now on: remembered on the customer's account, so the
    plan page, the methods offered, the payment and their next visit follow it. A currency the shop does not sell
    in is refused (422, the list shown again with the reason) and nothing changes."""
    ordered = _preferences(viewer, settings)
    offers = await orders.offers(db, _providers(request), ordered, user=viewer.user)
    sold = orders.sold_currencies(offers, ordered)
    try:
        await preferences.set_currency(db, viewer.user, currency, offered=sold, ip=client_ip(request))
    except ValidationFailed as exc:
        message = translate(viewer.user.language, "checkout.currency.unknown", currencies=", ".join(sold))
        return await _plan_list(
            request, viewer, db, settings, offers=offers, error_message=message, status_code=exc.status_code
        )
    if not is_htmx(request):
        return see_other("/app/checkout")
    return await _plan_list(request, viewer, db, settings)


# --- step 2: one plan, the promo code and the payment methods ----------------------------------------------


async def _choice(
    request: Request,
    viewer: Viewer,
    db: DbSession,
    settings: Settings,
    plan_code: str,
    *,
    promo_code: str | None,
    currency: str | None,
) -> PlanChoice:
    return await plan_choice(
        db,
        _providers(request),
        viewer.user,
        plan_code,
        promo_code=promo_code,
        now=utcnow(),
        preferences=_preferences(viewer, settings),
        currency=currency,
    )


async def _plan_page(
    request: Request,
    viewer: Viewer,
    db: DbSession,
    settings: Settings,
    plan_code: str,
    *,
    promo_code: str | None,
    currency: str | None = None,
    error: AppError | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    choice = await _choice(request, viewer, db, settings, plan_code, promo_code=promo_code, currency=currency)
    message = None
    # A promo-code refusal is already shown beside the price; anything else goes above the form.
    if error is not None and not (isinstance(error, PromoInvalid) and choice.promo_error is not None):
        message = error_message(viewer.user.language, error)
    context = {
        "choice": choice,
        "plan": choice.plan,
        "error_message": message,
        "devices_enforced": await provisioning.device_limits_enforced(db, viewer.user.id),
        **_helpers(viewer, settings, runtime_settings.snapshot(db, settings).support_username),
    }
    return render(request, "checkout/plan.html", context, status_code=status_code)


@router.get("/checkout/{plan_code}", response_class=HTMLResponse)
async def plan_page(
    request: Request, plan_code: str, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> HTMLResponse:
    return await _plan_page(request, viewer, db, settings, plan_code, promo_code=None)


@router.post("/checkout/{plan_code}/quote", response_class=HTMLResponse)
async def quote(
    request: Request,
    plan_code: str,
    viewer: PageViewer,
    db: DbSession,
    settings: AppSettings,
    promo_code: OptionalField = None,
    currency: OptionalField = None,
) -> HTMLResponse:
    """The price with the typed promo code, in the currency the form carries: only the price block for HTMX;
    the whole page for a plain form post. Stores nothing."""
    if not is_htmx(request):
        return await _plan_page(request, viewer, db, settings, plan_code, promo_code=promo_code, currency=currency)
    choice = await _choice(request, viewer, db, settings, plan_code, promo_code=promo_code, currency=currency)
    templates = request.app.state.templates
    context = templates.base_context(request) | {"choice": choice, "plan": choice.plan}
    context |= _helpers(viewer, settings, runtime_settings.snapshot(db, settings).support_username)
    return HTMLResponse(templates.render_block("checkout/plan.html", "price_block", context))


@router.post("/checkout/{plan_code}", response_model=None)
async def start(
    request: Request,
    plan_code: str,
    viewer: PageViewer,
    db: DbSession,
    settings: AppSettings,
    option: OptionalField = None,
    provider: OptionalField = None,
    method: OptionalField = None,
    promo_code: OptionalField = None,
    currency: OptionalField = None,
    one_off: OptionalField = None,
) -> Response:
    """Start paying in the currency the plan page showed (the form carries it; the provider must take it and
    the plan be priced in it): the price is computed here from the plan, that currency and the promo code (a
    client-sent amount is never read). A browser goes straight to the provider's page; Telegram (and Stars or
    QR payments) get the waiting page."""
    if option:
        provider, method = parse_option(option)
    order = CheckoutRequest(
        plan=plan_code,
        provider=provider or "",
        promo_code=promo_code or None,
        method=method,
        currency=currency or None,
        one_off=one_off == "on",  # the "pay once" box: no provider subscription, no saved method
    )
    # What this request did before (a first-seen Telegram user, their last visit) is kept whatever happens
    # below: on a refusal only the checkout's own unfinished writes are rolled back.
    await db.commit()
    try:
        if not provider:
            raise ValidationFailed("Choose a payment method.", code="method_required")
        payment = await start_checkout(
            db,
            _providers(request),
            settings,
            viewer.user,
            order,
            return_url=return_url(settings),
            ip=client_ip(request),
        )
    except AppError as exc:
        # Whatever the service had written before refusing is not ours to commit (a refused promo hold leaves a
        # flushed payment behind); what it committed itself (a provider refusal) stays.
        await db.rollback()
        await db.refresh(viewer.user)
        return await _plan_page(
            request,
            viewer,
            db,
            settings,
            plan_code,
            promo_code=promo_code,
            currency=currency,
            error=exc,
            status_code=exc.status_code,
        )
    waiting = f"/app/payments/{payment.public_id}"
    if viewer.via == "session" and sends_to_provider_page(payment):
        assert payment.pay_url is not None
        if is_htmx(request):
            return Response(status_code=200, headers={"HX-Redirect": payment.pay_url})
        return see_other(payment.pay_url)
    if not is_htmx(request):
        return see_other(waiting)
    view = PaymentView(payment, await db.get(Plan, payment.plan_id) if payment.plan_id else None)
    return await _payment_page(request, db, viewer, settings, view, headers={"HX-Push-Url": waiting})


# --- the waiting page, success and receipt -------------------------------------------------------------------


def _payment_context(viewer: Viewer, settings: Settings, view: PaymentView, support: str) -> dict[str, Any]:
    language = viewer.user.language
    qr = None
    if view.is_pending and view.qr_string:
        qr = qr_svg(view.qr_string, title=translate(language, "checkout.payment.qr_title"))
    return {
        "view": view,
        "payment": view.payment,
        "plan_name": view.plan_name(language),
        "qr": qr,
        **_helpers(viewer, settings, support),
    }


async def _payment_page(
    request: Request,
    db: AsyncSession,
    viewer: Viewer,
    settings: Settings,
    view: PaymentView,
    *,
    block: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    support = runtime_settings.snapshot(db, settings).support_username
    context = _payment_context(viewer, settings, view, support)
    return render(request, "checkout/payment.html", context, block=block, headers=headers)


@router.get("/payments/{public_id}", response_class=HTMLResponse)
async def payment_page(
    request: Request, public_id: str, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> HTMLResponse:
    view = await payment_view(db, viewer.user, public_id)
    return await _payment_page(request, db, viewer, settings, view)


@router.get("/payments/{public_id}/status", response_model=None)
async def payment_status(
    request: Request,
    public_id: str,
    viewer: PageViewer,
    db: DbSession,
    settings: AppSettings,
    known: str | None = None,
) -> Response:
    """The status block alone. The waiting page polls with `known=pending`: while that is still true the
    answer is an empty 204 (nothing is swapped), so the page does not redraw every two seconds."""
    view = await payment_view(db, viewer.user, public_id, with_plan=False)
    headers = {"cache-control": "no-store"}
    if known is not None and known == view.status and view.is_pending:
        return Response(status_code=204, headers=headers)
    if view.payment.plan_id:
        view.plan = await db.get(Plan, view.payment.plan_id)
    if view.payment.status == PaymentStatus.SUCCEEDED:
        headers["HX-Trigger"] = "payment-succeeded"  # app.js: haptic success inside Telegram
    return await _payment_page(request, db, viewer, settings, view, block="payment_status", headers=headers)


@router.get("/payments/{public_id}/receipt", response_class=HTMLResponse)
async def receipt_page(
    request: Request, public_id: str, viewer: PageViewer, db: DbSession, settings: AppSettings
) -> HTMLResponse:
    view = await payment_view(db, viewer.user, public_id, with_plan=False)
    if view.receipt is None:
        raise NotFound("This payment has no receipt: it has not been paid.", code="receipt_not_found")
    support = runtime_settings.snapshot(db, settings).support_username
    return render(request, "checkout/receipt.html", _payment_context(viewer, settings, view, support))
