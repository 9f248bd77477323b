"""Starting a checkout (SPEC §3.4): the offers a customer can choose from, and turning a choice into a pending
payment plus the provider's checkout.

Two commits around the provider call: the pending payment (with its promo-code hold) is committed before the
provider hears of it, so a webhook that arrives at once finds it; the provider's id and pay link are stored
after. A provider that refuses or is down fails the payment and gives the promo use back.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.config import Settings
from app.kit.clock import utcnow
from app.kit.errors import Conflict, ServiceUnavailable, ValidationFailed
from app.kit.money import Money
from app.models import Payment, PaymentStatus, Plan, User
from app.payments import pricing
from app.payments.providers.base import (
    CheckoutOrder,
    CheckoutRejected,
    PaymentProvider,
    ProviderUnavailable,
)
from app.payments.registry import PaymentRegistry
from app.payments.service import close_unpaid
from app.promo import service as promo_service
from app.subscriptions.renewal_methods import keeps_auto_renewal


@dataclass(frozen=True, slots=True)
class Offer:
    """One plan with its prices, each with the providers that take that currency."""

    plan: Plan
    prices: list[tuple[Money, list[str]]]


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    plan: str
    provider: str
    promo_code: str | None = None
    method: str | None = None
    currency: str | None = None
    # A client's retry key (the Idempotency-Key header): the same key returns the same payment.
    client_key: str | None = None
    # Pay once instead of starting a provider-managed subscription (a Razorpay e-mandate, a Star subscription)
    # or saving the method for renewals.
    one_off: bool = False


async def offers(session: AsyncSession, providers: PaymentRegistry, language: str) -> list[Offer]:
    plans = await pricing.active_plans(session)
    prices = await pricing.prices_of(session, plans)
    return [
        Offer(
            plan,
            [
                (price, [provider.name for provider in providers.for_currency(price.currency)])
                for price in pricing.preferred_first(prices[plan.id], language)
            ],
        )
        for plan in plans
    ]


async def choose_currency(
    session: AsyncSession, plan: Plan, provider: PaymentProvider, wanted: str | None, language: str
) -> str:
    """The currency to charge in: the one asked for, else the customer's usual one, among those the plan is
    priced in and the provider takes."""
    prices = pricing.preferred_first((await pricing.prices_of(session, [plan]))[plan.id], language)
    usable = usable_currencies(provider, prices)
    if wanted:
        if wanted.upper() not in usable:
            raise ValidationFailed(
                f"{provider.name} cannot take this plan in {wanted.upper()}.", code="currency_not_offered"
            )
        return wanted.upper()
    if not usable:
        raise ValidationFailed(f"{provider.name} takes none of this plan's currencies.", code="currency_not_offered")
    return usable[0]


def usable_currencies(provider: PaymentProvider, prices: list[Money]) -> list[str]:
    """The currencies of `prices` (in their order: the customer's usual one first) that `provider` takes."""
    return [price.currency for price in prices if price.currency in provider.currencies]


def _idempotency_key(user: User, client_key: str | None) -> str:
    if not client_key:
        return uuid.uuid4().hex
    if len(client_key) > 200:
        raise ValidationFailed("Idempotency-Key is longer than 200 characters.", code="bad_idempotency_key")
    return hashlib.sha256(f"{user.id}:{client_key}".encode()).hexdigest()


DAYS_WORD = {"ru": "дн.", "en": "days"}


def _description(plan: Plan, language: str, days: int) -> str:
    """What the provider's page and receipt show, in the customer's language."""
    name = plan.name.get(language) or plan.name.get("en") or plan.code
    return f"VPN {name} ({days} {DAYS_WORD.get(language, 'days')})"


async def start_checkout(
    session: AsyncSession,
    providers: PaymentRegistry,
    settings: Settings,
    user: User,
    request: CheckoutRequest,
    *,
    return_url: str,
    ip: str | None = None,
) -> Payment:
    """Create the pending payment and the provider's checkout. Commits `session` (twice)."""
    provider = providers.get(request.provider)
    plan = await pricing.plan_by_code(session, request.plan)
    if request.method is not None and request.method not in provider.methods:
        raise ValidationFailed(f"{provider.name} has no method {request.method!r}.", code="method_not_offered")
    key = _idempotency_key(user, request.client_key)
    if request.client_key:
        existing = await session.scalar(select(Payment).where(Payment.idempotency_key == key))
        if existing is not None:
            if existing.plan_id != plan.id or existing.provider != provider.name:
                raise Conflict("This Idempotency-Key was used for another checkout.", code="idempotency_key_reused")
            return existing
    currency = await choose_currency(session, plan, provider, request.currency, user.language)
    now = utcnow()
    quote = await pricing.quote(session, plan, currency, user=user, promo_code=request.promo_code, now=now)
    # SPEC §4.3: renewal is set up wherever the method allows it, unless the customer turned auto-renewal off
    # or chose to pay once.
    renewing = not request.one_off and await keeps_auto_renewal(session, user)
    recurring_days = plan.duration_days if provider.supports_recurring and renewing else None
    payment = Payment(
        public_id=str(uuid.uuid4()),
        user_id=user.id,
        plan_id=plan.id,
        provider=provider.name,
        method=request.method,
        amount_minor=quote.amount.minor,
        currency=currency,
        status=PaymentStatus.PENDING,
        idempotency_key=key,
        promo_code_id=quote.promo.id if quote.promo else None,
        days=quote.days,
        expires_at=now + timedelta(minutes=settings.checkout_ttl_minutes),
        details={"price_minor": quote.price.minor, "promo_code": quote.promo.code if quote.promo else None},
    )
    session.add(payment)
    await session.flush()
    if quote.promo is not None:
        try:
            await promo_service.hold(session, quote.promo, user=user, payment=payment)
        except promo_service.PromoInvalid:
            await session.rollback()  # the flushed payment must not outlive its lost race for the code
            raise
    audit.record(
        session,
        actor_type="user",
        actor_id=user.id,
        action="payment.created",
        entity_type="payment",
        entity_id=payment.public_id,
        after={"amount": str(quote.amount), "plan": plan.code, "provider": provider.name, "days": quote.days},
        ip=ip,
    )
    await session.commit()
    order = CheckoutOrder(
        order_id=payment.public_id,
        idempotency_key=payment.idempotency_key,
        amount=quote.amount,
        description=_description(plan, user.language, quote.days),
        user_id=user.id,
        telegram_id=user.telegram_id,
        return_url=return_url.format(payment=payment.public_id),
        expires_at=payment.expires_at,
        method=request.method,
        save_method=provider.supports_saved_methods and renewing,
        recurring_days=recurring_days,
    )
    try:
        checkout = await provider.create_checkout(order)
    except (CheckoutRejected, ProviderUnavailable) as exc:
        await _abandon(session, payment, str(exc))
        if isinstance(exc, CheckoutRejected):
            raise ValidationFailed(f"{provider.name} refused the payment: {exc}", code="provider_rejected") from exc
        raise ServiceUnavailable(
            f"{provider.name} is not answering right now; try again or choose another method.",
            code="provider_unavailable",
        ) from exc
    # Re-read under lock: a webhook may have settled the payment while the provider was answering.
    await session.refresh(payment, with_for_update=True)
    payment.external_id = payment.external_id or checkout.external_id
    payment.pay_url = checkout.pay_url
    payment.details = {**payment.details, **checkout.details, "invoice_link": checkout.invoice_link}
    if checkout.expires_at is not None:
        payment.expires_at = checkout.expires_at
    await session.commit()
    return payment


async def _abandon(session: AsyncSession, payment: Payment, reason: str) -> None:
    await close_unpaid(
        session, payment, PaymentStatus.FAILED, reason, action="payment.checkout_failed", by_provider=False
    )
    await session.commit()
