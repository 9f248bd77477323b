"""What the checkout pages and the checkout API show: the payment options of a plan, live quotes with a promo
code, and a payment as its customer sees it. The rules themselves (prices, promo codes, starting a payment)
live in app/payments and app/promo; this module only arranges their answers for display."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.kit.clock import parse_utc
from app.kit.money import Money
from app.models import Payment, PaymentStatus, Plan, User
from app.payments import pricing
from app.payments.orders import plan_currency, usable_currencies
from app.payments.pricing import Quote
from app.payments.registry import PaymentRegistry
from app.payments.service import payment_of_user
from app.promo.service import PromoInvalid
from app.subscriptions.renewal_methods import keeps_auto_renewal


@dataclass(frozen=True, slots=True)
class PayOption:
    """One button of the payment step: a provider, or one of its sub-methods, charging in `currency` (the
    customer's usual currency among those the plan is priced in and the provider takes)."""

    provider: str
    method: str | None
    currency: str

    @property
    def value(self) -> str:
        """The form value of the button: "provider" or "provider/method"."""
        return f"{self.provider}/{self.method}" if self.method else self.provider

    @property
    def label_key(self) -> str:
        return f"checkout.method.{self.provider}" + (f".{self.method}" if self.method else "")


def pay_options(providers: PaymentRegistry, prices: list[Money]) -> list[PayOption]:
    """Every enabled provider that takes one of `prices`' currencies (preferred first), one option per
    sub-method; the order is the registry's."""
    options = []
    for provider in providers:
        usable = usable_currencies(provider, prices)
        if not usable:
            continue
        for method in provider.methods or (None,):
            options.append(PayOption(provider.name, method, usable[0]))
    return options


def parse_option(value: str | None) -> tuple[str | None, str | None]:
    """ "yookassa/sbp" → ("yookassa", "sbp"); "demo" → ("demo", None)."""
    if not value:
        return None, None
    provider, _, method = value.partition("/")
    return provider or None, method or None


@dataclass(slots=True)
class PlanChoice:
    """Step 2 of the checkout: one plan, the one currency it is sold in to this customer, the providers that take
    that currency, and its price with the typed promo code."""

    plan: Plan
    currency: str | None  # None: the plan has no price at all
    options: list[PayOption]
    primary: Quote | None
    promo_code: str
    promo_error: PromoInvalid | None = None
    # Paying would set up renewal (a provider subscription or a saved method, SPEC §4.3), so the customer is
    # offered to pay once instead.
    renews: bool = False


async def plan_choice(
    session: AsyncSession,
    providers: PaymentRegistry,
    user: User,
    plan_code: str,
    *,
    promo_code: str | None,
    now: datetime,
    preferences: list[str],
    currency: str | None = None,
) -> PlanChoice:
    """The plan (NotFound if it is not on sale), its payment options, and its quote. The plan is sold in one
    currency: `currency` (the one the form carried) if the plan is priced in it and a provider takes it, else the
    customer's (orders.plan_currency); only the providers that take that currency are offered. An invalid promo
    code is not an error here: the quote falls back to the plain price and names the reason."""
    plan = await pricing.plan_by_code(session, plan_code)
    prices = pricing.preferred_first((await pricing.prices_of(session, [plan]))[plan.id], preferences)
    wanted = (currency or "").strip().upper()
    if not any(price.currency == wanted for price in prices) or not providers.for_currency(wanted):
        wanted = plan_currency(prices, providers, preferences) or (prices[0].currency if prices else "")
    code = (promo_code or "").strip()
    choice = PlanChoice(plan, wanted or None, [], None, code)
    if not wanted:
        return choice
    choice.options = pay_options(providers, [price for price in prices if price.currency == wanted])
    offered = {providers.get(option.provider) for option in choice.options}
    can_renew = any(provider.supports_recurring or provider.supports_saved_methods for provider in offered)
    choice.renews = can_renew and await keeps_auto_renewal(session, user)
    try:
        choice.primary = await pricing.quote(session, plan, wanted, user=user, promo_code=code or None, now=now)
    except PromoInvalid as exc:
        choice.promo_error = exc
        choice.primary = await pricing.quote(session, plan, wanted, user=user, promo_code=None, now=now)
    return choice


def return_url(settings: Settings) -> str:
    """Where a provider sends the customer back ({payment} is filled in by start_checkout): the public result
    page, since that is often the system browser, without the customer's session (app/checkout/result_pages.py)."""
    return f"{settings.public_base_url}/payments/{{payment}}"


def sends_to_provider_page(payment: Payment) -> bool:
    """The checkout is a provider's web page (a browser can be redirected to it), not a Telegram invoice or
    a QR code shown on our waiting page."""
    return bool(payment.pay_url)


@dataclass(slots=True)
class PaymentView:
    """A payment as its customer sees it on the waiting, success and receipt pages."""

    payment: Payment
    plan: Plan | None

    @property
    def status(self) -> str:
        return self.payment.status.value

    @property
    def is_pending(self) -> bool:
        return self.payment.status == PaymentStatus.PENDING

    @property
    def amount(self) -> Money:
        return Money.from_minor(self.payment.amount_minor, self.payment.currency)

    @property
    def invoice_link(self) -> str | None:
        return (self.payment.details or {}).get("invoice_link")

    @property
    def qr_string(self) -> str | None:
        return (self.payment.details or {}).get("qr_string")

    @property
    def pay_url(self) -> str | None:
        """A provider page to open (None for a Telegram invoice or a QR code)."""
        return self.payment.pay_url

    @property
    def receipt(self) -> dict[str, Any] | None:
        return self.payment.receipt

    @property
    def ends_at(self) -> datetime | None:
        return parse_utc((self.receipt or {}).get("ends_at"))

    @property
    def paid_at(self) -> datetime | None:
        return parse_utc((self.receipt or {}).get("paid_at")) or self.payment.paid_at

    def receipt_money(self, key: str) -> Money | None:
        """ "price", "discount" or "total" of the receipt (stored in minor units, app/payments/service.py)."""
        minor = (self.receipt or {}).get(f"{key}_minor")
        return Money.from_minor(minor, self.payment.currency) if isinstance(minor, int) else None

    def plan_name(self, language: str) -> str:
        names = (self.receipt or {}).get("plan_name") or (self.plan.name if self.plan else None) or {}
        code = (self.receipt or {}).get("plan") or (self.plan.code if self.plan else "")
        return names.get(language) or names.get("en") or code or "—"


async def payment_view(session: AsyncSession, user: User, public_id: str, *, with_plan: bool = True) -> PaymentView:
    """The user's own payment (NotFound for anyone else's)."""
    payment = await payment_of_user(session, user, public_id)
    plan = await session.get(Plan, payment.plan_id) if with_plan and payment.plan_id else None
    return PaymentView(payment, plan)
