"""The payment state machine (SPEC §5.2–5.3): every verified provider update goes through `apply_update`, inside
one database transaction, whoever delivers it (a webhook, a status fetch, a renewal charge, the demo provider).

    pending ──succeeded──▶ succeeded ──refunded (the whole amount, in one or several refunds)──▶ refunded
       │  └──amount/currency differ──▶ mismatch (nothing credited, staff alerted)
       └──failed / cancelled──▶ failed / cancelled ──succeeded (paid late)──▶ succeeded

Exactly once: the event row is unique per (provider, event id), so a redelivered event is a no-op, and the
payment row is locked (SELECT … FOR UPDATE) before its status is read, so two different events about one payment
are applied one after the other. Activation (days onto the subscription, referral rewards, the promo redemption)
happens in the same transaction as `succeeded`; the panel change and the customer's message are outbox rows of
that transaction.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.config import Settings
from app.db import insert_for
from app.kit.clock import utcnow
from app.kit.crypto import cipher
from app.kit.errors import NotFound
from app.kit.money import Money
from app.models import (
    Payment,
    PaymentEvent,
    PaymentStatus,
    Plan,
    SavedPaymentMethod,
    Subscription,
    User,
)
from app.notifications.service import alert_staff, notify_user
from app.payments import refunds
from app.payments.providers.base import PaymentState, ProviderUpdate, SavedMethod
from app.promo import service as promo_service
from app.referrals import rewards
from app.subscriptions.activation import add_days, take_days

SETTLED = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED, PaymentStatus.MISMATCH})

log = logging.getLogger(__name__)


class UnknownPayment(NotFound):
    """The provider reports a payment we never created."""

    code = "unknown_payment"


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this event was applied before
    UNCHANGED = "unchanged"  # a new event that changes nothing (already in that state)
    MISMATCH = "mismatch"


def _audit(
    session: AsyncSession, payment: Payment, action: str, before: str | None, *, by_provider: bool = True, **after: Any
) -> None:
    audit.record(
        session,
        actor_type="provider" if by_provider else "system",
        actor_id=payment.provider if by_provider else None,
        action=action,
        entity_type="payment",
        entity_id=payment.public_id,
        before={"status": before} if before else None,
        after={"status": payment.status.value, **after},
    )


async def _record_event(session: AsyncSession, provider: str, update: ProviderUpdate) -> int | None:
    """Insert the event; None when it was recorded before (a redelivery). Concurrent inserts of one event wait
    on the unique index and then see the first one's row."""
    statement = (
        insert_for(session, PaymentEvent)
        .values(
            provider=provider,
            event_id=update.event_id[:128],
            kind=update.kind[:64],
            payload=dict(update.raw),
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(PaymentEvent.id)
    )
    return await session.scalar(statement)


async def _find_locked(
    session: AsyncSession, provider: str, *, order_id: str | None, external_id: str | None
) -> Payment | None:
    """The payment an update is about, locked, after its customer's row: customer first, then payment, the order
    staff actions lock in (app/admin/users/pages.py::_act) and the refund job too. Settling a payment writes the
    customer's row (the subscriptions trigger), so the other order deadlocks with a staff action on the same
    customer: a refund's own notification, applied while staff clicked Refund again, did."""
    found = None
    if external_id:
        by_external_id = Payment.provider == provider, Payment.external_id == external_id
        found = (await session.execute(select(Payment.id, Payment.user_id).where(*by_external_id))).first()
    if found is None and order_id:
        by_order_id = Payment.provider == provider, Payment.public_id == order_id
        found = (await session.execute(select(Payment.id, Payment.user_id).where(*by_order_id))).first()
    if found is None:
        return None
    # A payment's customer never changes, so reading it before the locks is safe.
    await session.execute(select(User.id).where(User.id == found.user_id).with_for_update())
    return await session.scalar(select(Payment).where(Payment.id == found.id).with_for_update())


def _copy_for_new_charge(original: Payment, update: ProviderUpdate, *, renewal: bool) -> Payment:
    """A second real charge of an order we already credited: a provider-side renewal, or the customer paying an
    old invoice again (a new Stars charge id with the same payload). It is its own payment, credited again."""
    return Payment(
        public_id=str(uuid.uuid4()),
        user_id=original.user_id,
        subscription_id=original.subscription_id,
        plan_id=original.plan_id,
        provider=original.provider,
        method=update.method or original.method,
        amount_minor=original.amount_minor,
        currency=original.currency,
        status=PaymentStatus.PENDING,
        external_id=update.external_id,
        # One row per provider charge id, whatever its length (the column holds 64 characters).
        idempotency_key=hashlib.sha256(f"charge:{original.provider}:{update.external_id}".encode()).hexdigest(),
        days=original.days,
        is_renewal=renewal,
        saved_method_id=original.saved_method_id,
        details={"original_payment": original.public_id, "subscription_ref": update.subscription_ref},
    )


async def _payment_for(session: AsyncSession, provider: str, update: ProviderUpdate) -> Payment:
    payment = await _find_locked(session, provider, order_id=update.order_id, external_id=update.external_id)
    if payment is None:
        raise UnknownPayment(f"No {provider} payment matches this notification.")
    new_charge = (
        update.state == PaymentState.SUCCEEDED
        and payment.status in SETTLED
        and update.external_id is not None
        and payment.external_id not in (None, update.external_id)
    )
    if new_charge or (update.is_renewal and payment.status in SETTLED):
        payment = _copy_for_new_charge(payment, update, renewal=update.is_renewal)
        session.add(payment)
        await session.flush()
    return payment


async def apply_update(session: AsyncSession, provider: str, update: ProviderUpdate, settings: Settings) -> Outcome:
    """Apply one verified update. Raises UnknownPayment for a payment we do not have (nothing is changed: the
    caller's transaction rolls back)."""
    event_id = await _record_event(session, provider, update)
    if event_id is None:
        return Outcome.DUPLICATE
    payment = await _payment_for(session, provider, update)
    event = await session.get(PaymentEvent, event_id)
    if event is not None:
        event.payment_id = payment.id
    if update.revoked_method_secret:
        await _deactivate_method(session, provider, update.revoked_method_secret)
    now = utcnow()
    match update.state:
        case PaymentState.SUCCEEDED:
            return await _succeed(session, payment, update, settings, now)
        case PaymentState.FAILED | PaymentState.CANCELLED:
            return await _end_unpaid(session, payment, update)
        case PaymentState.REFUNDED:
            return await _refunded(session, payment, update, now)
        case _:
            return Outcome.UNCHANGED


def _amount_matches(payment: Payment, paid: Money | None) -> bool:
    # A success that does not say how much was paid is not trusted either: fail closed.
    return paid is not None and paid.currency == payment.currency and paid.minor == payment.amount_minor


async def _succeed(
    session: AsyncSession, payment: Payment, update: ProviderUpdate, settings: Settings, now: datetime
) -> Outcome:
    if payment.status in SETTLED:
        return Outcome.UNCHANGED
    before = payment.status.value
    if update.external_id and payment.external_id is None:
        payment.external_id = update.external_id
    if not _amount_matches(payment, update.amount):
        payment.status = PaymentStatus.MISMATCH
        paid = str(update.amount) if update.amount else "unknown"
        payment.failure_reason = f"paid {paid}, expected {Money.from_minor(payment.amount_minor, payment.currency)}"
        _audit(session, payment, "payment.mismatch", before, paid=paid)
        await alert_staff(
            session,
            "payment_mismatch",
            {"payment": payment.public_id, "provider": payment.provider, "reason": payment.failure_reason},
            dedupe_key=f"payment_mismatch:{payment.id}",
        )
        return Outcome.MISMATCH
    payment.status = PaymentStatus.SUCCEEDED
    payment.paid_at = update.paid_at or now
    payment.method = update.method or payment.method
    payment.failure_reason = None
    user = await session.get_one(User, payment.user_id)
    plan = await session.get(Plan, payment.plan_id) if payment.plan_id else None
    bonus = await rewards.on_successful_payment(session, payment, user, settings, now=now)
    payment.bonus_days = bonus.days
    subscription = await add_days(session, user.id, payment.days + bonus.days, plan=plan, now=now)
    await rewards.mark_applied(session, bonus, now)
    payment.subscription_id = subscription.id
    await promo_service.redeem(session, payment)
    if update.saved_method is not None:
        payment.saved_method_id = await _save_method(session, payment, update.saved_method)
    if update.subscription_ref:
        payment.details = {**payment.details, "subscription_ref": update.subscription_ref}
    payment.receipt = receipt_for(payment, plan, subscription)
    _audit(session, payment, "payment.succeeded", before, ends_at=subscription.ends_at.isoformat())
    await notify_user(
        session, user.id, "payment_succeeded", payment.receipt, dedupe_key=f"payment_succeeded:{payment.id}"
    )
    return Outcome.APPLIED


async def close_unpaid(
    session: AsyncSession,
    payment: Payment,
    status: PaymentStatus,
    reason: str | None,
    *,
    action: str,
    by_provider: bool = True,
) -> bool:
    """End a pending payment unpaid (failed, cancelled, expired, refused at checkout): record why and give its
    promo-code use back. False when it was not pending. (If the customer pays it after all, the provider's
    success still credits them: failed/cancelled → succeeded is allowed.)"""
    if payment.status != PaymentStatus.PENDING:
        return False
    payment.status = status
    payment.failure_reason = reason[:1000] if reason else None
    await promo_service.release(session, payment)
    _audit(session, payment, action, PaymentStatus.PENDING.value, by_provider=by_provider, reason=reason)
    return True


async def _end_unpaid(session: AsyncSession, payment: Payment, update: ProviderUpdate) -> Outcome:
    status = PaymentStatus.FAILED if update.state == PaymentState.FAILED else PaymentStatus.CANCELLED
    if not await close_unpaid(session, payment, status, update.failure_reason, action=f"payment.{status.value}"):
        return Outcome.UNCHANGED
    # A declined renewal charge is told by the renewal policy (app/subscriptions/expiry.py), with its retry date.
    if status == PaymentStatus.FAILED and not payment.is_renewal:
        await notify_user(
            session,
            payment.user_id,
            "payment_failed",
            {"payment": payment.public_id, "reason": update.failure_reason},
            dedupe_key=f"payment_failed:{payment.id}",
        )
    return Outcome.APPLIED


async def _refunded(session: AsyncSession, payment: Payment, update: ProviderUpdate, now: datetime) -> Outcome:
    settled = await refunds.settle(session, payment, update, now)
    if settled is None:
        return Outcome.UNCHANGED
    refund = settled.refund
    amount = Money.from_minor(refund.amount_minor, payment.currency)
    payment.details = {**payment.details, "refunded": str(refunds.refunded(payment))}
    if settled.whole and payment.subscription_id is not None:
        subscription = await session.get(Subscription, payment.subscription_id, with_for_update=True)
        if subscription is not None:
            # A refunded purchase does not keep its time: the days it bought (and its bonus) are taken back. A
            # partial refund is a goodwill gesture on a purchase the customer keeps; staff shorten it themselves
            # if they mean to.
            await take_days(session, subscription, payment.days + payment.bonus_days, now=now)
    audit.record(
        session,
        actor_type="provider",
        actor_id=payment.provider,
        action="payment.refunded" if settled.whole else "payment.partially_refunded",
        entity_type="payment",
        entity_id=payment.public_id,
        before={"status": PaymentStatus.SUCCEEDED.value, "refunded_minor": settled.before_minor},
        after={
            "status": payment.status.value,
            "refunded_minor": payment.refunded_minor,
            "refund": refund.public_id,
            "amount": str(amount),
        },
    )
    await notify_user(
        session,
        payment.user_id,
        "payment_refunded" if settled.whole else "payment_partially_refunded",
        {"payment": payment.public_id, "amount": str(amount)},
        dedupe_key=f"payment_refunded:{payment.id}:{refund.id}",
    )
    return Outcome.APPLIED


async def _save_method(session: AsyncSession, payment: Payment, method: SavedMethod) -> int | None:
    """The payer's saved method for renewals (found by its fingerprint, created on first sight, reactivated);
    None when that method is another customer's: it is never reactivated or charged on this payer's behalf."""
    fingerprint = cipher().fingerprint(method.secret)
    saved = await session.scalar(
        select(SavedPaymentMethod).where(
            SavedPaymentMethod.provider == payment.provider, SavedPaymentMethod.fingerprint == fingerprint
        )
    )
    if saved is None:
        saved = SavedPaymentMethod(
            user_id=payment.user_id,
            provider=payment.provider,
            method_type=method.method_type,
            title=method.title[:128],
            secret_encrypted=cipher().encrypt(method.secret),
            fingerprint=fingerprint,
        )
        try:
            async with session.begin_nested():
                session.add(saved)
                await session.flush()
        except IntegrityError:
            # The same method saved by a concurrent payment: use that row.
            saved = await session.scalar(
                select(SavedPaymentMethod).where(
                    SavedPaymentMethod.provider == payment.provider, SavedPaymentMethod.fingerprint == fingerprint
                )
            )
            assert saved is not None
    if saved.user_id != payment.user_id:
        log.warning("payment %s: its saved method belongs to another customer; not saved for this one", payment.id)
        audit.record(
            session,
            actor_type="provider",
            actor_id=payment.provider,
            action="payment_method.foreign",
            entity_type="payment",
            entity_id=payment.id,
            after={"owner_id": saved.user_id, "payer_id": payment.user_id},
        )
        return None
    saved.is_active = True
    saved.revoked_at = None
    return saved.id


async def _deactivate_method(session: AsyncSession, provider: str, secret: str) -> None:
    saved = await session.scalar(
        select(SavedPaymentMethod).where(
            SavedPaymentMethod.provider == provider, SavedPaymentMethod.fingerprint == cipher().fingerprint(secret)
        )
    )
    if saved is not None and saved.is_active:
        saved.is_active = False
        saved.revoked_at = utcnow()
        audit.record(
            session,
            actor_type="provider",
            actor_id=provider,
            action="payment_method.revoked",
            entity_type="saved_payment_method",
            entity_id=saved.id,
        )


def receipt_for(payment: Payment, plan: Plan | None, subscription: Subscription) -> dict[str, Any]:
    """The receipt shown on the success page and sent in the message (not a fiscal document: YooKassa issues
    that one when 54-FZ receipts are on)."""
    price_minor = payment.details.get("price_minor", payment.amount_minor)
    return {
        "number": payment.public_id.split("-")[0].upper(),
        "payment": payment.public_id,
        "paid_at": (payment.paid_at or utcnow()).isoformat(),
        "provider": payment.provider,
        "method": payment.method,
        "plan": plan.code if plan else None,
        "plan_name": plan.name if plan else None,
        "days": payment.days,
        "bonus_days": payment.bonus_days,
        # Amounts in minor units of `currency`, like every amount we store; pages and messages format them.
        "price_minor": price_minor,
        "discount_minor": price_minor - payment.amount_minor,
        "total_minor": payment.amount_minor,
        "currency": payment.currency,
        "ends_at": subscription.ends_at.isoformat(),
        "renewal": payment.is_renewal,
    }


async def payment_of_user(session: AsyncSession, user: User, public_id: str) -> Payment:
    payment = await session.scalar(select(Payment).where(Payment.public_id == public_id, Payment.user_id == user.id))
    if payment is None:
        raise NotFound("There is no such payment.", code="payment_not_found")
    return payment


async def precheck(session: AsyncSession, provider: str, order_id: str, paid: Money) -> str | None:
    """Whether an order may be paid right now (Telegram's pre-checkout query): None if yes, else the reason
    shown to the customer."""
    payment = await session.scalar(select(Payment).where(Payment.provider == provider, Payment.public_id == order_id))
    if payment is None:
        return "This invoice is not known to the shop. Please open the checkout again."
    if payment.status == PaymentStatus.SUCCEEDED:
        # An old invoice message tapped again: refusing spares the customer an accidental second charge.
        return "This invoice has already been paid. To buy more time, open the checkout again."
    if payment.status != PaymentStatus.PENDING:
        return "This invoice is no longer valid. Please open the checkout again."
    if not _amount_matches(payment, paid):
        return "The price of this invoice has changed. Please open the checkout again."
    user = await session.get(User, payment.user_id)
    if user is None or user.is_blocked:
        return "This account cannot make purchases."
    return None
