"""The checkout JSON API (SPEC §3.4) for clients other than our pages: the same authentication as /api/me
(Telegram initData or the session cookie with its CSRF header), the same services, the same error codes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field

from app.auth.dependencies import CurrentUser
from app.checkout.views import PaymentView, payment_view, return_url
from app.deps import AppSettings, DbSession, client_ip
from app.kit.clock import utcnow
from app.kit.money import Money
from app.models import Payment, PaymentStatus
from app.payments import orders, pricing
from app.payments.orders import CheckoutRequest, choose_currency, start_checkout
from app.payments.registry import PaymentRegistry
from app.provisioning import service as provisioning

router = APIRouter(prefix="/api", tags=["checkout"])


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `promo_expired`, `plan_not_found`.")
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "`plan_not_found`, `provider_not_available`, `payment_not_found`"},
    422: {
        "model": ErrorOut,
        "description": "`promo_<reason>` (not_found, inactive, not_started, expired, exhausted, not_for_plan, "
        "already_used, no_currency, covers_price), `currency_not_offered`, `method_not_offered`, "
        "`provider_rejected`, `idempotency_key_reused` (the key named another checkout), `validation_failed`",
    },
    429: {"model": ErrorOut, "description": "`rate_limited`, `too_many_open_checkouts` (see Retry-After)"},
    503: {"model": ErrorOut, "description": "`provider_unavailable`: try again or choose another method"},
}


class MoneyOut(BaseModel):
    amount: str = Field(description="Decimal string in the currency's units, e.g. `199.00`.", examples=["199.00"])
    amount_minor: int = Field(description="Integer minor units (kopecks, cents; whole Stars for XTR).")
    currency: str

    @classmethod
    def of(cls, money: Money) -> MoneyOut:
        return cls(amount=str(money.amount), amount_minor=money.minor, currency=money.currency)


class ProviderOut(BaseModel):
    name: str
    methods: list[str] = Field(
        description="Sub-methods to pass as `method`; empty: the provider's own page offers them."
    )


class PriceOut(MoneyOut):
    providers: list[ProviderOut] = Field(description="Enabled providers that take this currency.")


class PlanOut(BaseModel):
    code: str
    name: str = Field(description="In the user's language.")
    days: int
    device_limit: int | None
    traffic_limit_bytes: int | None
    discount_percent: str = Field(description="The plan's advertised discount, for a badge; prices already include it.")
    prices: list[PriceOut] = Field(description="The user's usual currency first.")


class CheckoutIn(BaseModel):
    plan: str = Field(max_length=32, examples=["month"])
    provider: str = Field(max_length=32, examples=["yookassa"])
    method: str | None = Field(None, max_length=32, examples=["sbp"])
    currency: str | None = Field(
        None,
        max_length=8,
        description="Default: the user's usual currency (chosen on the plan list, else by language) among those "
        "the plan is priced in and the provider takes.",
    )
    promo_code: str | None = Field(None, max_length=64)
    one_off: bool = Field(
        False,
        description="Pay once: no provider subscription (a Razorpay e-mandate, a Star subscription), no saved method.",
    )


class CheckoutOut(MoneyOut):
    payment_id: str
    status: PaymentStatus
    days: int = Field(description="Days the payment buys: the plan's plus a promo code's extra days.")
    pay_url: str | None = Field(description="A page to open (Telegram.WebApp.openLink, or a browser redirect).")
    invoice_link: str | None = Field(description="A Telegram Stars invoice: open with Telegram.WebApp.openInvoice.")
    qr_string: str | None = Field(description="A QRIS payload to render as a QR code (Xendit).")
    expires_at: datetime | None


class QuoteIn(BaseModel):
    plan: str = Field(max_length=32)
    currency: str | None = Field(None, max_length=8)
    provider: str | None = Field(None, max_length=32, description="Price in the currency this provider would charge.")
    promo_code: str | None = Field(None, max_length=64)


class QuoteOut(BaseModel):
    plan: str
    currency: str
    price: MoneyOut = Field(description="The plan's price.")
    amount: MoneyOut = Field(description="What the user would pay.")
    discount: MoneyOut
    days: int
    promo_code: str | None = Field(description="The code applied (normalised), or null without one.")


class ReceiptOut(BaseModel):
    number: str
    paid_at: datetime
    plan: str | None
    days: int
    bonus_days: int
    price: MoneyOut
    discount: MoneyOut
    total: MoneyOut
    provider: str
    method: str | None
    ends_at: datetime


class PaymentOut(MoneyOut):
    payment_id: str
    status: PaymentStatus
    plan: str | None
    provider: str
    method: str | None
    days: int
    bonus_days: int
    pay_url: str | None
    invoice_link: str | None
    qr_string: str | None
    created_at: datetime
    expires_at: datetime | None
    paid_at: datetime | None
    failure_reason: str | None
    receipt: ReceiptOut | None = Field(description="Set once the payment has succeeded.")


def _providers(request: Request) -> PaymentRegistry:
    return request.app.state.resources.payments


def _receipt(view: PaymentView) -> ReceiptOut | None:
    receipt = view.receipt
    if receipt is None or view.paid_at is None or view.ends_at is None:
        return None
    zero = Money.from_minor(0, view.payment.currency)
    return ReceiptOut(
        number=receipt.get("number", ""),
        paid_at=view.paid_at,
        plan=receipt.get("plan"),
        days=receipt.get("days", view.payment.days),
        bonus_days=receipt.get("bonus_days", view.payment.bonus_days),
        price=MoneyOut.of(view.receipt_money("price") or view.amount),
        discount=MoneyOut.of(view.receipt_money("discount") or zero),
        total=MoneyOut.of(view.receipt_money("total") or view.amount),
        provider=receipt.get("provider", view.payment.provider),
        method=receipt.get("method"),
        ends_at=view.ends_at,
    )


def _checkout_out(payment: Payment) -> CheckoutOut:
    view = PaymentView(payment, None)
    return CheckoutOut(
        **MoneyOut.of(view.amount).model_dump(),
        payment_id=payment.public_id,
        status=payment.status,
        days=payment.days,
        pay_url=payment.pay_url,
        invoice_link=view.invoice_link,
        qr_string=view.qr_string,
        expires_at=payment.expires_at,
    )


@router.get("/plans", response_model=list[PlanOut])
async def plans(request: Request, user: CurrentUser, db: DbSession, settings: AppSettings) -> list[PlanOut]:
    """The plans on sale with their price in each currency and, per price, the enabled providers; the user's
    usual currency first (the one they chose on the plan list, else their language's, else the shop's)."""
    providers = _providers(request)
    methods = {provider.name: list(provider.methods) for provider in providers}
    devices = await provisioning.device_limits_enforced(db, user.id)  # never sell a limit nobody enforces
    return [
        PlanOut(
            code=offer.plan.code,
            name=offer.plan.title(user.language),
            days=offer.plan.duration_days,
            device_limit=offer.plan.device_limit if devices else None,
            traffic_limit_bytes=offer.plan.traffic_limit_bytes,
            discount_percent=str(offer.plan.discount_percent),
            prices=[
                PriceOut(
                    **MoneyOut.of(price).model_dump(),
                    providers=[ProviderOut(name=name, methods=methods[name]) for name in names],
                )
                for price, names in offer.prices
            ],
        )
        for offer in await orders.offers(
            db, providers, pricing.currency_preferences(user, settings.default_currency), user=user
        )
    ]


@router.post("/checkout/quote", response_model=QuoteOut, responses={k: ERRORS[k] for k in (404, 422)})
async def quote(request: Request, body: QuoteIn, user: CurrentUser, db: DbSession, settings: AppSettings) -> QuoteOut:
    """The price of a plan with a promo code, without starting anything (an invalid code is a 422 naming
    the reason)."""
    plan = await pricing.plan_by_code(db, body.plan)
    preferences = pricing.currency_preferences(user, settings.default_currency)
    if body.provider:
        currency = await choose_currency(db, plan, _providers(request).get(body.provider), body.currency, preferences)
    elif body.currency:
        currency = body.currency.upper()
    else:
        prices = pricing.preferred_first((await pricing.prices_of(db, [plan]))[plan.id], preferences)
        currency = orders.plan_currency(prices, _providers(request), preferences) or (
            prices[0].currency if prices else settings.default_currency
        )
    result = await pricing.quote(db, plan, currency, user=user, promo_code=body.promo_code, now=utcnow())
    return QuoteOut(
        plan=plan.code,
        currency=currency,
        price=MoneyOut.of(result.price),
        amount=MoneyOut.of(result.amount),
        discount=MoneyOut.of(result.discount),
        days=result.days,
        promo_code=result.promo.code if result.promo else None,
    )


@router.post("/checkout", response_model=CheckoutOut, status_code=201, responses=ERRORS)
async def start(
    request: Request,
    body: CheckoutIn,
    user: CurrentUser,
    db: DbSession,
    settings: AppSettings,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="Repeat a request with the same key to get the same payment instead of a second one.",
        ),
    ] = None,
) -> CheckoutOut:
    """Start a payment: the amount is computed on the server from the plan, currency and promo code. Open
    `pay_url` (or `invoice_link` with openInvoice, or show `qr_string`), then poll `GET /api/payments/{id}`."""
    payment = await start_checkout(
        db,
        _providers(request),
        settings,
        user,
        CheckoutRequest(
            plan=body.plan,
            provider=body.provider,
            promo_code=body.promo_code,
            method=body.method,
            currency=body.currency,
            client_key=idempotency_key,
            one_off=body.one_off,
        ),
        return_url=return_url(settings),
        ip=client_ip(request),
    )
    return _checkout_out(payment)


@router.get("/payments/{payment_id}", response_model=PaymentOut, responses={404: ERRORS[404]})
async def get_payment(payment_id: str, user: CurrentUser, db: DbSession) -> PaymentOut:
    """One of the user's payments: its status, amounts, and the receipt once it has succeeded."""
    view = await payment_view(db, user, payment_id)
    p = view.payment
    return PaymentOut(
        **MoneyOut.of(view.amount).model_dump(),
        payment_id=p.public_id,
        status=p.status,
        plan=view.plan.code if view.plan else (view.receipt or {}).get("plan"),
        provider=p.provider,
        method=p.method,
        days=p.days,
        bonus_days=p.bonus_days,
        pay_url=p.pay_url if view.is_pending else None,
        invoice_link=view.invoice_link if view.is_pending else None,
        qr_string=view.qr_string if view.is_pending else None,
        created_at=p.created_at,
        expires_at=p.expires_at,
        paid_at=p.paid_at,
        failure_reason=p.failure_reason,
        receipt=_receipt(view) if p.status in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED) else None,
    )
