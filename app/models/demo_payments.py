"""The demo payment provider's own storage: its invoices, as a real provider keeps them on its side.

The shop's tables never read these; the shop sees the demo provider only through `PaymentProvider` (a checkout,
signed webhooks, status fetches), like any real provider."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampsMixin, str_enum


class DemoInvoiceStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class DemoInvoice(IdMixin, TimestampsMixin, Base):
    __tablename__ = "demo_invoices"

    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(255))
    return_url: Mapped[str] = mapped_column(String(1024))
    status: Mapped[DemoInvoiceStatus] = mapped_column(str_enum(DemoInvoiceStatus, "demo_invoice_status"))
    # A saved demo card charged for renewals: its token (None for one-off invoices).
    card_token: Mapped[str | None] = mapped_column(String(64))
    save_card: Mapped[bool] = mapped_column(Boolean, default=False)
    # Notifications sent about this invoice: each gets its own event id, as a provider's redeliveries do not.
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
