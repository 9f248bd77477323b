"""The payments' shapes in the admin JSON API. Amounts are given both as integer minor units (exact, what we
store) and as a decimal string in units, never as a float."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.admin.payments.queries import PaymentDetail
from app.kit.money import Money
from app.models import Payment, PaymentEvent, User
from app.payments import refunds


class PaymentOut(BaseModel):
    id: int
    public_id: str
    user_id: int
    telegram_id: int
    username: str | None
    provider: str
    method: str | None
    status: str
    amount_minor: int
    amount: str
    currency: str
    external_id: str | None
    is_renewal: bool
    days: int
    bonus_days: int
    subscription_id: int | None
    plan_id: int | None
    failure_reason: str | None
    created_at: datetime
    paid_at: datetime | None
    refunded_at: datetime | None
    # What went back so far (partial refunds leave the status succeeded).
    refunded_minor: int
    refunded: str

    @classmethod
    def of(cls, payment: Payment, user: User) -> PaymentOut:
        return cls(
            id=payment.id,
            public_id=payment.public_id,
            user_id=user.id,
            telegram_id=user.telegram_id,
            username=user.username,
            provider=payment.provider,
            method=payment.method,
            status=payment.status.value,
            amount_minor=payment.amount_minor,
            amount=str(Money.from_minor(payment.amount_minor, payment.currency).amount),
            currency=payment.currency,
            external_id=payment.external_id,
            is_renewal=payment.is_renewal,
            days=payment.days,
            bonus_days=payment.bonus_days,
            subscription_id=payment.subscription_id,
            plan_id=payment.plan_id,
            failure_reason=payment.failure_reason,
            created_at=payment.created_at,
            paid_at=payment.paid_at,
            refunded_at=payment.refunded_at,
            refunded_minor=payment.refunded_minor,
            refunded=str(refunds.refunded(payment).amount),
        )


class PaymentPage(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None


class PaymentEventOut(BaseModel):
    id: int
    event_id: str
    kind: str
    received_at: datetime
    # The provider's event as we accepted it (after its signature was verified or it was re-fetched).
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: PaymentEvent) -> PaymentEventOut:
        return cls(
            id=event.id, event_id=event.event_id, kind=event.kind, received_at=event.received_at, payload=event.payload
        )


class AuditOut(BaseModel):
    action: str
    actor_type: str
    actor_id: str | None
    created_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class PaymentDetailOut(PaymentOut):
    details: dict[str, Any]
    receipt: dict[str, Any] | None
    events: list[PaymentEventOut]
    audit: list[AuditOut]

    @classmethod
    def of_detail(cls, detail: PaymentDetail) -> PaymentDetailOut:
        base = PaymentOut.of(detail.payment, detail.user).model_dump()
        return cls(
            **base,
            details=detail.payment.details,
            receipt=detail.payment.receipt,
            events=[PaymentEventOut.of(event) for event in detail.events],
            audit=[
                AuditOut(
                    action=row.action,
                    actor_type=row.actor_type,
                    actor_id=row.actor_id,
                    created_at=row.created_at,
                    before=row.before,
                    after=row.after,
                )
                for row in detail.audit
            ],
        )
