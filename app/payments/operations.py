"""Payment operations that call a provider on the shop's initiative: refunds (SPEC §5.5), renewal charges of a
saved method (SPEC §4.3) and reconciliation of checkouts whose webhook never came (reference §1.6).

None of them calls a provider inside a database transaction. Each is safe to repeat: the provider call carries
a key derived from our payment (YooKassa returns the first answer for a repeated key; Stars answers
CHARGE_ALREADY_REFUNDED), and the answer goes through `apply_update`, which applies an event once.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.db import transaction
from app.kit.clock import utcnow
from app.kit.crypto import cipher
from app.kit.errors import Conflict, ExternalServiceError
from app.kit.field_errors import FieldInvalid
from app.kit.money import Money
from app.models import (
    Payment,
    PaymentRefund,
    PaymentStatus,
    Plan,
    RefundStatus,
    SavedPaymentMethod,
    Subscription,
    User,
)
from app.outbox import service as outbox
from app.payments import pricing, refunds
from app.payments.providers.base import (
    CheckoutOrder,
    CheckoutRejected,
    NotSupported,
    PaymentState,
    ProviderUnavailable,
    ProviderUpdate,
)
from app.payments.service import Outcome, apply_update, close_unpaid
from app.payments.topics import CANCEL_RECURRING_TOPIC
from app.resources import Resources

log = logging.getLogger(__name__)

REFUND_TOPIC = "payments.refund"
RECONCILE_AFTER = timedelta(minutes=5)


# --- refunds --------------------------------------------------------------------------------------------------


async def request_refund(
    session: AsyncSession,
    resources: Resources,
    payment: Payment,
    *,
    amount_minor: int | None = None,
    request_key: str | None = None,
    actor_type: str,
    actor_id: object,
    ip: str | None = None,
) -> PaymentRefund:
    """Queue the refund of `amount_minor` of a succeeded payment (None: all that is left) in the caller's
    transaction, which holds the payment's row lock; the outbox runs it. The same `request_key` again (a double
    click, a resubmitted form) returns the first request and queues nothing."""
    if request_key:
        earlier = await session.scalar(
            select(PaymentRefund).where(
                PaymentRefund.payment_id == payment.id, PaymentRefund.request_key == request_key
            )
        )
        if earlier is not None:
            return earlier
    if payment.status != PaymentStatus.SUCCEEDED:
        raise Conflict(f"Only a succeeded payment can be refunded; this one is {payment.status.value}.")
    if payment.provider not in resources.payments:
        raise Conflict(f"The provider {payment.provider} is not enabled, so it cannot refund.")
    provider = resources.payments.get(payment.provider)
    if not provider.supports_refunds or not payment.external_id:
        raise Conflict(f"{payment.provider} payments cannot be refunded from here.", code="refund_not_supported")
    left = await refunds.refundable_minor(session, payment)
    if left <= 0:
        raise Conflict(
            "Nothing is left to refund: the rest is already refunded or on its way.", code="refund_none_left"
        )
    amount = left if amount_minor is None else amount_minor
    left_text = str(Money.from_minor(left, payment.currency))
    if amount < 1:
        raise FieldInvalid("amount", "Give an amount above zero.")
    if amount > left:
        raise FieldInvalid("amount", f"At most {left_text} of this payment can still be refunded.")
    whole_rest = amount == payment.amount_minor - payment.refunded_minor
    if not whole_rest and not provider.supports_partial_refunds:
        raise FieldInvalid(
            "amount", f"{payment.provider} refunds whole payments only: refund all of {left_text} or nothing."
        )
    refund = refunds.new_refund(
        payment, amount, requested_by=f"{actor_type}:{actor_id}" if actor_id else actor_type, request_key=request_key
    )
    session.add(refund)
    await session.flush()
    money = Money.from_minor(amount, payment.currency)
    audit.record(
        session,
        actor_type=actor_type,
        actor_id=actor_id,
        action="payment.refund_requested",
        entity_type="payment",
        entity_id=payment.public_id,
        before={"status": payment.status.value, "refunded_minor": payment.refunded_minor, "refund": None},
        after={
            "status": payment.status.value,
            "refunded_minor": payment.refunded_minor,
            "refund": "requested",
            "refund_id": refund.public_id,
            "amount_minor": amount,
            "amount": str(money),
        },
        ip=ip,
    )
    await outbox.add(
        session,
        REFUND_TOPIC,
        {"payment_id": payment.id, "refund_id": refund.id},
        dedupe_key=f"{REFUND_TOPIC}:{payment.id}:{refund.id}",
    )
    return refund


async def _refund_failed(resources: Resources, refund_id: int, reason: str) -> None:
    async with transaction(resources.sessionmaker) as session:
        refund = await session.get_one(PaymentRefund, refund_id, with_for_update=True)
        if refund.status != RefundStatus.REQUESTED:
            return
        payment = await session.get_one(Payment, refund.payment_id)
        refund.status = RefundStatus.FAILED
        refund.failure_reason = reason[:1000]
        audit.record(
            session,
            actor_type="provider",
            actor_id=payment.provider,
            action="payment.refund_failed",
            entity_type="payment",
            entity_id=payment.public_id,
            before={"refund": refund.public_id, "refund_status": RefundStatus.REQUESTED.value},
            after={"refund": refund.public_id, "refund_status": refund.status.value, "reason": refund.failure_reason},
        )


async def _legacy_request(resources: Resources, payment_id: int) -> int | None:
    """A message queued before refunds had rows ({"payment_id"} only) meant the whole payment: give it its row."""
    async with transaction(resources.sessionmaker) as session:
        payment = await session.get_one(Payment, payment_id, with_for_update=True)
        if payment.status != PaymentStatus.SUCCEEDED or payment.refunded_minor:
            return None
        refund = refunds.new_refund(payment, payment.amount_minor, requested_by="system", request_key="legacy")
        refund.public_id = payment.public_id  # the key the provider already saw, if it was called before
        session.add(refund)
        await session.flush()
        return refund.id


@outbox.handler(REFUND_TOPIC, max_attempts=200)
async def run_refund(ctx: dict, payload: dict) -> None:
    resources: Resources = ctx["resources"]
    refund_id = payload.get("refund_id") or await _legacy_request(resources, payload["payment_id"])
    if refund_id is None:
        return
    async with transaction(resources.sessionmaker) as session:
        refund = await session.get_one(PaymentRefund, refund_id)
        payment = await session.get_one(Payment, refund.payment_id)
        user = await session.get_one(User, payment.user_id)
    if refund.status != RefundStatus.REQUESTED:
        return
    provider = resources.payments.get(payment.provider)
    amount = Money.from_minor(refund.amount_minor, refund.currency)
    try:
        # One key per refund row: a retried job repeats the same request, which the provider answers once.
        result = await provider.refund(
            payment.external_id or "",
            amount,
            idempotency_key=f"refund-{refund.public_id}",
            user_telegram_id=user.telegram_id,
        )
    except (CheckoutRejected, NotSupported) as exc:
        await _refund_failed(resources, refund.id, str(exc))
        raise outbox.PermanentFailure(f"{payment.provider} refused the refund: {exc}") from exc
    async with transaction(resources.sessionmaker) as session:
        # The customer first, then the payment: the order staff actions lock in (app/admin/users/pages.py::_act),
        # since settling may take days back, and the subscriptions trigger then writes the customer's row too.
        await session.execute(select(User.id).where(User.id == payment.user_id).with_for_update())
        # Name the provider's refund on our row, so its notification finds this row rather than making another.
        locked = await session.get_one(Payment, payment.id, with_for_update=True)
        row = await session.get_one(PaymentRefund, refund.id, populate_existing=True)
        taken = await session.scalar(
            select(PaymentRefund.id).where(
                PaymentRefund.payment_id == locked.id, PaymentRefund.provider_refund_id == result.refund_id[:128]
            )
        )
        if row.provider_refund_id is None and taken is None:
            row.provider_refund_id = result.refund_id[:128]
    if result.state != PaymentState.REFUNDED:
        return  # the provider's refund notification finishes it
    update = ProviderUpdate(
        event_id=f"refund:{result.refund_id}",
        kind="refund",
        state=PaymentState.REFUNDED,
        external_id=payment.external_id,
        order_id=payment.public_id,
        amount=amount,
        refund_id=(row.provider_refund_id or result.refund_id)[:128],
    )
    async with transaction(resources.sessionmaker) as session:
        await apply_update(session, payment.provider, update, resources.settings)


# --- renewals -------------------------------------------------------------------------------------------------


class RenewalResult(enum.StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # the provider is still processing; its webhook (or reconciliation) finishes it
    FAILED = "failed"
    NO_METHOD = "no_method"  # nothing saved that can be charged: the customer has to pay themselves
    UNAVAILABLE = "unavailable"  # the provider could not be reached; try again later


@dataclass(frozen=True, slots=True)
class _RenewalOrder:
    payment: Payment
    secret: str
    order: CheckoutOrder


def renewal_key(subscription_id: int, attempt: date) -> str:
    """The idempotency key of a subscription's renewal charge made on `attempt`: one charge per day."""
    return f"renewal-{subscription_id}-{attempt.isoformat()}"


async def _renewal_method(session: AsyncSession, resources: Resources, user_id: int) -> SavedPaymentMethod | None:
    methods = await session.scalars(
        select(SavedPaymentMethod)
        .where(SavedPaymentMethod.user_id == user_id, SavedPaymentMethod.is_active)
        .order_by(SavedPaymentMethod.id.desc())
    )
    for method in methods:
        if method.provider in resources.payments and resources.payments.get(method.provider).supports_saved_methods:
            return method
    return None


async def _prepare_renewal(
    session: AsyncSession, resources: Resources, subscription_id: int, attempt: date
) -> _RenewalOrder | RenewalResult:
    subscription = await session.get_one(Subscription, subscription_id)
    user = await session.get_one(User, subscription.user_id)
    plan = await session.get(Plan, subscription.plan_id) if subscription.plan_id else None
    method = await _renewal_method(session, resources, user.id)
    if plan is None or method is None:
        return RenewalResult.NO_METHOD
    provider = resources.payments.get(method.provider)
    preferences = pricing.currency_preferences(user, resources.settings.default_currency)
    prices = pricing.preferred_first(await pricing.renewal_prices(session, plan, user), preferences)
    price = next((price for price in prices if price.currency in provider.currencies), None)
    if price is None:
        return RenewalResult.NO_METHOD
    # One charge per subscription per day, whatever retries the job makes.
    key = renewal_key(subscription.id, attempt)
    payment = await session.scalar(select(Payment).where(Payment.idempotency_key == key))
    if payment is None:
        payment = Payment(
            public_id=str(uuid.uuid4()),
            user_id=user.id,
            subscription_id=subscription.id,
            plan_id=plan.id,
            provider=provider.name,
            method=method.method_type,
            amount_minor=price.minor,
            currency=price.currency,
            status=PaymentStatus.PENDING,
            idempotency_key=key,
            days=plan.duration_days,
            is_renewal=True,
            saved_method_id=method.id,
            expires_at=utcnow() + timedelta(days=1),
            details={"price_minor": price.minor},
        )
        session.add(payment)
        await session.flush()
        audit.record(
            session,
            actor_type="system",
            actor_id=None,
            action="payment.renewal_started",
            entity_type="payment",
            entity_id=payment.public_id,
            after={"amount": str(price), "subscription": subscription.id},
        )
    elif payment.status != PaymentStatus.PENDING:
        return RenewalResult.SUCCEEDED if payment.status == PaymentStatus.SUCCEEDED else RenewalResult.FAILED
    order = CheckoutOrder(
        order_id=payment.public_id,
        idempotency_key=payment.idempotency_key,
        amount=price,
        description=f"VPN renewal ({plan.duration_days} d)",
        user_id=user.id,
        telegram_id=user.telegram_id,
        return_url=resources.settings.public_base_url + "/app",
        expires_at=payment.expires_at or utcnow() + timedelta(days=1),
    )
    return _RenewalOrder(payment, cipher().decrypt(method.secret_encrypted), order)


async def charge_renewal(resources: Resources, subscription_id: int, *, attempt: date) -> RenewalResult:
    """Charge the subscription's saved method for one more period of its plan (the expiry job calls this on
    the end date and again a day later). The payment row is committed before the provider is called."""
    async with transaction(resources.sessionmaker) as session:
        prepared = await _prepare_renewal(session, resources, subscription_id, attempt)
    if isinstance(prepared, RenewalResult):
        return prepared
    provider = resources.payments.get(prepared.payment.provider)
    try:
        update = await provider.charge_saved(prepared.order, prepared.secret)
    except (ProviderUnavailable, ExternalServiceError):
        return RenewalResult.UNAVAILABLE
    except (CheckoutRejected, NotSupported) as exc:
        update = ProviderUpdate(
            event_id=f"charge-refused:{prepared.payment.public_id}",
            kind="charge",
            state=PaymentState.FAILED,
            external_id=None,
            order_id=prepared.payment.public_id,
            amount=None,
            failure_reason=str(exc)[:500],
        )
    async with transaction(resources.sessionmaker) as session:
        await apply_update(session, provider.name, update, resources.settings)
    return {
        PaymentState.SUCCEEDED: RenewalResult.SUCCEEDED,
        PaymentState.PENDING: RenewalResult.PENDING,
    }.get(update.state, RenewalResult.FAILED)


# --- reconciliation -------------------------------------------------------------------------------------------


async def reconcile_pending(resources: Resources, *, limit: int = 200) -> dict[str, int]:
    """Ask the provider about checkouts still pending after a few minutes (a lost webhook), and cancel the
    expired ones (releasing their promo holds)."""
    now = utcnow()
    counts = {"applied": 0, "expired": 0, "unchanged": 0, "unavailable": 0}
    async with transaction(resources.sessionmaker) as session:
        pending = list(
            (
                await session.scalars(
                    select(Payment)
                    .where(Payment.status == PaymentStatus.PENDING, Payment.created_at < now - RECONCILE_AFTER)
                    .order_by(Payment.id)
                    .limit(limit)
                )
            ).all()
        )
    for payment in pending:
        update = None
        if payment.provider in resources.payments:
            try:
                update = await resources.payments.get(payment.provider).fetch(payment.external_id, payment.public_id)
            except (ProviderUnavailable, ExternalServiceError, NotSupported):
                counts["unavailable"] += 1
        async with transaction(resources.sessionmaker) as session:
            if update is not None and update.state != PaymentState.PENDING:
                outcome = await apply_update(session, payment.provider, update, resources.settings)
                counts["applied" if outcome in (Outcome.APPLIED, Outcome.MISMATCH) else "unchanged"] += 1
            elif payment.expires_at is not None and payment.expires_at <= now:
                locked = await session.get_one(Payment, payment.id, with_for_update=True)
                closed = await close_unpaid(
                    session, locked, PaymentStatus.CANCELLED, "expired", action="payment.expired", by_provider=False
                )
                counts["expired" if closed else "unchanged"] += 1
            else:
                counts["unchanged"] += 1
    return counts


# --- stopping provider-side subscriptions ---------------------------------------------------------------------


@outbox.handler(CANCEL_RECURRING_TOPIC, max_attempts=200)
async def cancel_recurring(ctx: dict, payload: dict) -> None:
    """The customer removed a saved method: tell the provider to stop renewing (a no-op for providers whose
    saved methods only we can charge)."""
    resources: Resources = ctx["resources"]
    async with transaction(resources.sessionmaker) as session:
        method = await session.get_one(SavedPaymentMethod, payload["method_id"])
        user = await session.get_one(User, method.user_id)
    if method.provider not in resources.payments:
        raise outbox.PermanentFailure(f"{method.provider} is not enabled; cancel the subscription there by hand")
    try:
        await resources.payments.get(method.provider).cancel_recurring(
            cipher().decrypt(method.secret_encrypted), user_telegram_id=user.telegram_id
        )
    except NotSupported:
        return
    except CheckoutRejected as exc:
        raise outbox.PermanentFailure(f"{method.provider} refused to cancel: {exc}") from exc
