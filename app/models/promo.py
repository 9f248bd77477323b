"""Promo codes, their fixed amounts per currency, the plans they apply to, and redemptions."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, IdMixin, TimestampsMixin, str_enum


class PromoKind(enum.StrEnum):
    PERCENT = "percent"
    FIXED = "fixed"
    DAYS = "days"


class RedemptionStatus(enum.StrEnum):
    HELD = "held"
    REDEEMED = "redeemed"
    RELEASED = "released"


promo_code_plans = Table(
    "promo_code_plans",
    Base.metadata,
    Column("promo_code_id", BigId, ForeignKey("promo_codes.id", ondelete="CASCADE"), primary_key=True),
    Column("plan_id", BigId, ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
)


class PromoCode(IdMixin, TimestampsMixin, Base):
    __tablename__ = "promo_codes"

    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[PromoKind] = mapped_column(str_enum(PromoKind, "promo_kind"))
    percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    extra_days: Mapped[int | None] = mapped_column(Integer)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    # Holds and redemptions counted atomically with a conditional UPDATE (used_count < max_uses).
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    once_per_user: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        CheckConstraint("used_count >= 0", name="used_not_negative"),
        CheckConstraint("max_uses IS NULL OR used_count <= max_uses", name="within_max_uses"),
        CheckConstraint("percent IS NULL OR (percent > 0 AND percent <= 100)", name="percent_range"),
    )


class PromoCodeAmount(IdMixin, Base):
    """The discount of a fixed-amount code in one currency."""

    __tablename__ = "promo_code_amounts"

    promo_code_id: Mapped[int] = mapped_column(BigId, ForeignKey("promo_codes.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(8))
    amount_minor: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("promo_code_id", "currency"),)


class PromoRedemption(IdMixin, TimestampsMixin, Base):
    __tablename__ = "promo_redemptions"

    promo_code_id: Mapped[int] = mapped_column(BigId, ForeignKey("promo_codes.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    payment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("payments.id", ondelete="SET NULL"), unique=True)
    status: Mapped[RedemptionStatus] = mapped_column(str_enum(RedemptionStatus, "redemption_status"))
    once_per_user: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        # Once per user: at most one live (held or redeemed) redemption of a once-per-user code.
        Index(
            "uq_promo_redemptions_live_per_user",
            "promo_code_id",
            "user_id",
            unique=True,
            sqlite_where=text("status != 'released' AND once_per_user"),
            postgresql_where=text("status != 'released' AND once_per_user"),
        ),
    )
