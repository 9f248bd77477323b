"""Payments, the provider events that moved them, and saved methods for auto-renewal."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, CreatedMixin, IdMixin, TimestampsMixin, str_enum


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    MISMATCH = "mismatch"


class Payment(IdMixin, TimestampsMixin, Base):
    __tablename__ = "payments"

    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("subscriptions.id", ondelete="SET NULL"))
    plan_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("plans.id", ondelete="SET NULL"))
    provider: Mapped[str] = mapped_column(String(32))
    method: Mapped[str | None] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[PaymentStatus] = mapped_column(str_enum(PaymentStatus, "payment_status"))
    external_id: Mapped[str | None] = mapped_column(String(128))
    # Our key for the provider's idempotence header and for a client retrying checkout.
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    promo_code_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("promo_codes.id", ondelete="SET NULL"))
    days: Mapped[int] = mapped_column(Integer)
    bonus_days: Mapped[int] = mapped_column(Integer, default=0)
    is_renewal: Mapped[bool] = mapped_column(Boolean, default=False)
    saved_method_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("saved_payment_methods.id", ondelete="SET NULL")
    )
    pay_url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    receipt: Mapped[dict[str, Any] | None]
    expires_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    # When the whole amount was refunded (the status became refunded); partial refunds leave it empty.
    refunded_at: Mapped[datetime | None]
    # How much of `amount_minor` went back to the customer so far: the sum of the payment's succeeded refunds
    # (payment_refunds), kept here so lists show it without a join. Below the amount the payment stays
    # succeeded; equal to it, the payment is refunded.
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("provider", "external_id"),
        CheckConstraint("amount_minor > 0", name="positive_amount"),
        CheckConstraint("refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refund_within_amount"),
        Index("ix_payments_status_created_at", "status", "created_at"),
    )


class RefundStatus(enum.StrEnum):
    REQUESTED = "requested"  # staff asked; the outbox is calling the provider (or it is processing)
    SUCCEEDED = "succeeded"  # the money went back; counted in the payment's refunded_minor
    FAILED = "failed"  # the provider refused; nothing went back


class PaymentRefund(IdMixin, CreatedMixin, Base):
    """One refund of (part of) a payment: asked by staff, or found at the provider (a dashboard refund).

    Exactly once: a staff request carries the form's one-time key (a double click inserts nothing new), the
    provider is called with `refund-<public_id>` as its idempotency key, and the provider's refund id is unique
    per payment, so its notification and our own call settle the same row once."""

    __tablename__ = "payment_refunds"

    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    payment_id: Mapped[int] = mapped_column(BigId, ForeignKey("payments.id", ondelete="CASCADE"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[RefundStatus] = mapped_column(str_enum(RefundStatus, "refund_status"))
    # The staff form's one-time token: the same submission twice is one refund.
    request_key: Mapped[str | None] = mapped_column(String(64))
    provider_refund_id: Mapped[str | None] = mapped_column(String(128))
    requested_by: Mapped[str | None] = mapped_column(String(64))  # "staff:12", "provider:yookassa"
    failure_reason: Mapped[str | None] = mapped_column(Text)
    succeeded_at: Mapped[datetime | None] = mapped_column(index=True)

    __table_args__ = (
        UniqueConstraint("payment_id", "request_key"),
        UniqueConstraint("payment_id", "provider_refund_id"),
        CheckConstraint("amount_minor > 0", name="positive_amount"),
    )


class PaymentEvent(IdMixin, Base):
    """Every provider event we accepted, unique per provider event id: a redelivered webhook is a no-op."""

    __tablename__ = "payment_events"

    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    payment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("payments.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("provider", "event_id"),)


class SavedPaymentMethod(IdMixin, CreatedMixin, Base):
    """A provider's reusable method (YooKassa payment_method_id, a Razorpay or Stars subscription)."""

    __tablename__ = "saved_payment_methods"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    method_type: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(128))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # Keyed hash of the secret: encryption is randomized, so uniqueness is enforced on this instead.
    fingerprint: Mapped[str] = mapped_column(String(64))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    revoked_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("provider", "fingerprint"),)


class PaymentProviderConfig(IdMixin, TimestampsMixin, Base):
    """A payment provider's settings made in the admin: switched on or off, its credentials (encrypted, as one
    JSON object) and options. What is not set here comes from the environment; `revision` grows on every change,
    so each process's registry sees that it must rebuild its providers."""

    __tablename__ = "payment_provider_configs"

    name: Mapped[str] = mapped_column(String(32), unique=True)
    # None: as the environment decides (on when its credentials are complete).
    is_enabled: Mapped[bool | None] = mapped_column(Boolean)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=1)
