"""Refunds of a payment, whole or in parts (SPEC §5.5): the one place that says how much of a payment went back.

- `payments.refunded_minor` is what a payment's succeeded refunds add up to; every page, export and the API read
  it from there. Only `settle` changes it, under the payment's row lock.
- `refunds_in` is what the dashboard subtracts from revenue: the succeeded refunds of a span, by the time each
  one succeeded (a payment refunded in two parts on two days lowers each day by its part).
- A partly refunded payment stays succeeded; the refund that brings the total to the amount makes it refunded.

Staff requests are queued by `app/payments/operations.request_refund` and run through the outbox; the provider's
answer and its notification both arrive here as `ProviderUpdate`s, matched to one row by the provider's refund id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.money import Money
from app.models import Payment, PaymentRefund, PaymentStatus, RefundStatus
from app.payments.providers.base import ProviderUpdate


def refunded(payment: Payment) -> Money:
    return Money.from_minor(payment.refunded_minor or 0, payment.currency)


async def pending_minor(session: AsyncSession, payment: Payment) -> int:
    """What requested refunds not yet answered by the provider add up to."""
    total = await session.scalar(
        select(func.sum(PaymentRefund.amount_minor)).where(
            PaymentRefund.payment_id == payment.id, PaymentRefund.status == RefundStatus.REQUESTED
        )
    )
    return int(total or 0)


async def refundable_minor(session: AsyncSession, payment: Payment) -> int:
    """What staff may still ask to refund: the amount less what went back and what is on its way back."""
    if payment.status != PaymentStatus.SUCCEEDED:
        return 0
    return max(0, payment.amount_minor - (payment.refunded_minor or 0) - await pending_minor(session, payment))


def new_refund(payment: Payment, amount_minor: int, *, requested_by: str, request_key: str | None) -> PaymentRefund:
    return PaymentRefund(
        public_id=str(uuid.uuid4()),
        payment_id=payment.id,
        amount_minor=amount_minor,
        currency=payment.currency,
        status=RefundStatus.REQUESTED,
        request_key=request_key,
        requested_by=requested_by[:64],
    )


@dataclass(frozen=True, slots=True)
class Settled:
    refund: PaymentRefund
    before_minor: int
    whole: bool  # this refund completed the payment's refund: the payment is now refunded


async def _row_for(session: AsyncSession, payment: Payment, key: str, amount_minor: int) -> PaymentRefund:
    row = await session.scalar(
        select(PaymentRefund).where(PaymentRefund.payment_id == payment.id, PaymentRefund.provider_refund_id == key)
    )
    if row is not None:
        return row
    # The notification overtook our own call's answer: it belongs to the oldest request of that amount that the
    # provider has not named yet.
    row = await session.scalar(
        select(PaymentRefund)
        .where(
            PaymentRefund.payment_id == payment.id,
            PaymentRefund.status == RefundStatus.REQUESTED,
            PaymentRefund.provider_refund_id.is_(None),
            PaymentRefund.amount_minor == amount_minor,
        )
        .order_by(PaymentRefund.id)
        .limit(1)
    )
    if row is None:
        # A refund made at the provider's own dashboard: recorded all the same.
        row = new_refund(payment, amount_minor, requested_by=f"provider:{payment.provider}", request_key=None)
        session.add(row)
    row.provider_refund_id = key
    return row


async def settle(session: AsyncSession, payment: Payment, update: ProviderUpdate, now: datetime) -> Settled | None:
    """Count a refund the provider reports as done (the payment row is locked by the caller). None when it was
    counted before, or nothing is left to refund."""
    remaining = payment.amount_minor - (payment.refunded_minor or 0)
    if payment.status != PaymentStatus.SUCCEEDED or remaining <= 0:
        return None
    # A report without an amount (or in another currency) is a whole refund: the providers that send one refund
    # whole (Stars). More than what is left cannot have gone back; the rest is capped.
    said = update.amount
    amount = said.minor if said is not None and said.currency == payment.currency and said.minor > 0 else remaining
    amount = min(amount, remaining)
    row = await _row_for(session, payment, (update.refund_id or update.event_id)[:128], amount)
    if row.status == RefundStatus.SUCCEEDED:
        return None
    before = payment.refunded_minor or 0
    row.status = RefundStatus.SUCCEEDED
    row.amount_minor = amount
    row.succeeded_at = now
    row.failure_reason = None
    payment.refunded_minor = before + amount
    whole = payment.refunded_minor >= payment.amount_minor
    if whole:
        payment.status = PaymentStatus.REFUNDED
        payment.refunded_at = now
    await session.flush()
    return Settled(row, before, whole)


async def refunds_in(session: AsyncSession, start: datetime, end: datetime) -> dict[str, tuple[int, int]]:
    """The succeeded refunds from `start` to `end` per currency: (how many, minor units)."""
    rows = await session.execute(
        select(PaymentRefund.currency, func.count(), func.sum(PaymentRefund.amount_minor))
        .where(
            PaymentRefund.status == RefundStatus.SUCCEEDED,
            PaymentRefund.succeeded_at >= start,
            PaymentRefund.succeeded_at < end,
        )
        .group_by(PaymentRefund.currency)
    )
    return {currency: (count, int(amount or 0)) for currency, count, amount in rows}
