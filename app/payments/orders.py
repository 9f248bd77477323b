"""Starting a checkout (SPEC §3.4): the offers a customer can choose from, and turning a choice into a pending
payment plus the provider's checkout.

Two commits around the provider call: the pending payment (with its promo-code hold) is committed before the
provider hears of it, so a webhook that arrives at once finds it; the provider's id and pay link are stored
after. A provider that refuses or is down fails the payment and gives the promo use back.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.config import Settings
from app.db import insert_for
from app.kit.clock import utcnow
from app.kit.errors import RateLimited, ServiceUnavailable, ValidationFailed
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
from app.runtime_settings import service as runtime_settings
from app.subscriptions.renewal_methods import keeps_auto_renewal


@dataclass(frozen=True, slots=True)
class Offer:
    """One plan with its prices, each with the providers that take that currency."""

    plan: Plan
    prices: list[tuple[Money, list[str]]]

    @property
    def shown_price(self) -> Money | None:
        """The price the customer sees and would pay: the first in their order that some provider takes (the
        currency plan_currency picks for the plan's page), else the first at all."""
        return next((price for price, names in self.prices if names), self.prices[0][0] if self.prices else None)


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


async def offers(
    session: AsyncSession, providers: PaymentRegistry, preferences: list[str], *, user: User | None = None
) -> list[Offer]:
    """The plans on sale, each with its prices in the customer's order (pricing.currency_preferences); for a
    customer (`user`), the prices they would be charged (a price experiment's variant included)."""
    plans = await pricing.active_plans(session)
    prices = await (pricing.customer_prices(session, plans, user) if user else pricing.prices_of(session, plans))
    return [
        Offer(
            plan,
            [
                (price, [provider.name for provider in providers.for_currency(price.currency)])
                for price in pricing.preferred_first(prices[plan.id], preferences)
            ],
        )
        for plan in plans
    ]


def sold_currencies(offers: list[Offer], preferences: list[str]) -> list[str]:
    """The currencies the shop sells in: some plan is priced in it and some enabled provider takes it. The
    customer's preferred one first, so `[0]` is the currency their plan list opens in."""
    sold = dict.fromkeys(price.currency for offer in offers for price, names in offer.prices if names)
    rank = {code: index for index, code in enumerate(preferences)}
    return sorted(sold, key=lambda code: rank.get(code, len(rank)))


async def currencies_sold(session: AsyncSession, providers: PaymentRegistry, preferences: list[str]) -> list[str]:
    """sold_currencies of the plans on sale now (for a page that does not list the plans themselves)."""
    return sold_currencies(await offers(session, providers, preferences), preferences)


def plan_currency(prices: list[Money], providers: PaymentRegistry, preferences: list[str]) -> str | None:
    """The one currency a plan is sold in to this customer: the first of their preferences the plan is priced
    in and some enabled provider takes (None: no provider takes any of its currencies)."""
    for price in pricing.preferred_first(prices, preferences):
        if providers.for_currency(price.currency):
            return price.currency
    return None


async def choose_currency(
    session: AsyncSession, plan: Plan, provider: PaymentProvider, wanted: str | None, preferences: list[str]
) -> str:
    """The currency to charge in: the one asked for, else the customer's usual one, among those the plan is
    priced in and the provider takes."""
    prices = pricing.preferred_first((await pricing.prices_of(session, [plan]))[plan.id], preferences)
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
    name = plan.title(language)
    return f"VPN {name} ({days} {DAYS_WORD.get(language, 'days')})"


async def _made_under(session: AsyncSession, key: str) -> Payment | None:
    """The payment already made under this idempotency key, if any."""
    return await session.scalar(select(Payment).where(Payment.idempotency_key == key))


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
    preferences = pricing.currency_preferences(user, settings.default_currency)
    currency = await choose_currency(session, plan, provider, request.currency, preferences)
    await _one_at_a_time(session, user)
    existing = await _made_under(session, key) if request.client_key else None
    if existing is not None:
        return _replayed(existing, request, plan, provider, currency)
    now = utcnow()
    await _ensure_room_for_another(session, user, settings, now)
    checkout_minutes = (await runtime_settings.current(session, settings)).checkout_ttl_minutes
    quote = await pricing.quote(session, plan, currency, user=user, promo_code=request.promo_code, now=now)
    # SPEC §4.3: renewal is set up wherever the method allows it, unless the customer turned auto-renewal off
    # or chose to pay once.
    renewing = not request.one_off and await keeps_auto_renewal(session, user)
    recurring_days = plan.duration_days if provider.supports_recurring and renewing else None
    # INSERT … ON CONFLICT on the key: parallel requests with one Idempotency-Key (a double tap, a retry while
    # the first is still running) make one payment; the losers wait for the winner's commit and replay it.
    inserted = await session.scalar(
        insert_for(session, Payment)
        .values(
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
            expires_at=now + timedelta(minutes=checkout_minutes),
            details={"price_minor": quote.price.minor, "promo_code": quote.promo.code if quote.promo else None},
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Payment.id)
    )
    if inserted is None:
        winner = await _made_under(session, key)
        assert winner is not None  # the conflicting row is committed, or we would still be waiting for it
        return _replayed(winner, request, plan, provider, currency)
    payment = await session.get_one(Payment, inserted)
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


async def _one_at_a_time(session: AsyncSession, user: User) -> None:
    """One customer's checkouts take turns from here to their first commit: a parallel one with the same
    Idempotency-Key then finds the payment (instead of a promo code it holds), and parallel ones cannot all see
    room for one more open checkout. PostgreSQL locks the customer's row; SQLite, with its one writer, takes the
    write lock by a no-op write."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(User.id).where(User.id == user.id).with_for_update())
    else:
        await session.execute(update(User).where(User.id == user.id).values(id=User.id))


class TooManyOpenCheckouts(RateLimited):
    code = "too_many_open_checkouts"


async def _ensure_room_for_another(session: AsyncSession, user: User, settings: Settings, now: datetime) -> None:
    """At most `max_open_checkouts` unpaid, unexpired checkouts per customer: each is a call to a provider and a
    held promo code, so one customer must not open them by the hundred."""
    expiries = (
        await session.scalars(
            select(Payment.expires_at)
            .where(
                Payment.user_id == user.id,
                Payment.status == PaymentStatus.PENDING,
                or_(Payment.expires_at.is_(None), Payment.expires_at > now),
            )
            .order_by(Payment.expires_at)
        )
    ).all()
    if len(expiries) < settings.max_open_checkouts:
        return
    soonest = next((moment for moment in expiries if moment is not None), None)
    wait = math.ceil((soonest - now).total_seconds()) if soonest is not None else 60
    raise TooManyOpenCheckouts(
        f"You have {len(expiries)} unpaid checkouts open; finish one of them, or wait until one expires.",
        retry_after=max(1, wait),
    )


def _replayed(
    existing: Payment, request: CheckoutRequest, plan: Plan, provider: PaymentProvider, currency: str
) -> Payment:
    """The payment a repeated Idempotency-Key names, if the request is the same one; a key reused for another
    checkout is the client's mistake, refused rather than answered with a payment for something else."""
    promo = (existing.details or {}).get("promo_code") or ""
    wanted_promo = (request.promo_code or "").strip()
    same = (
        existing.plan_id == plan.id
        and existing.provider == provider.name
        and existing.currency == currency
        and existing.method == request.method
        and promo.casefold() == wanted_promo.casefold()
    )
    if not same:
        raise ValidationFailed(
            "This Idempotency-Key was used for another checkout (plan, provider, currency, method or promo code).",
            code="idempotency_key_reused",
        )
    return existing


async def _abandon(session: AsyncSession, payment: Payment, reason: str) -> None:
    await close_unpaid(
        session, payment, PaymentStatus.FAILED, reason, action="payment.checkout_failed", by_provider=False
    )
    await session.commit()
