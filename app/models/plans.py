"""Plans and their price in each currency (integer minor units; Stars are whole)."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, IdMixin, TimestampsMixin, str_enum


class TrafficStrategy(enum.StrEnum):
    """When a plan's traffic allowance starts over by itself (besides every paid period, which always resets it).
    Panels map it: Marzban `data_limit_reset_strategy` no_reset/month, Remnawave `trafficLimitStrategy`
    NO_RESET/MONTH."""

    NO_RESET = "no_reset"
    MONTHLY = "month"


class Plan(IdMixin, TimestampsMixin, Base):
    __tablename__ = "plans"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[dict[str, Any]]  # {"ru": "...", "en": "..."}
    duration_days: Mapped[int] = mapped_column(Integer)
    discount_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal(0))
    traffic_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    device_limit: Mapped[int | None] = mapped_column(Integer)
    traffic_strategy: Mapped[TrafficStrategy] = mapped_column(
        str_enum(TrafficStrategy, "traffic_strategy"), default=TrafficStrategy.NO_RESET
    )
    # Remnawave internal squads (uuids or names) this plan's accounts get; None: the server's default squads.
    panel_squads: Mapped[list[Any] | None]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def title(self, language: str) -> str:
        """The plan's name for a reader of `language`: theirs, else the English one, else its code."""
        return self.name.get(language) or self.name.get("en") or self.code

    __table_args__ = (
        CheckConstraint("duration_days > 0", name="positive_duration"),
        CheckConstraint("discount_percent >= 0 AND discount_percent < 100", name="discount_range"),
    )


class PlanPrice(IdMixin, Base):
    __tablename__ = "plan_prices"

    plan_id: Mapped[int] = mapped_column(BigId, ForeignKey("plans.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(8))
    amount_minor: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("plan_id", "currency"),
        CheckConstraint("amount_minor > 0", name="positive_amount"),
    )
