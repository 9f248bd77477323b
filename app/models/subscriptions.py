"""Subscriptions and the once-per-person trial grant."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, CreatedMixin, IdMixin, TimestampsMixin, str_enum


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    TRIAL = "trial"
    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# The statuses that give VPN access (until ends_at).
LIVE_STATUSES = frozenset({SubscriptionStatus.TRIAL, SubscriptionStatus.ACTIVE})


class Subscription(IdMixin, TimestampsMixin, Base):
    __tablename__ = "subscriptions"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("plans.id", ondelete="SET NULL"))
    status: Mapped[SubscriptionStatus] = mapped_column(str_enum(SubscriptionStatus, "subscription_status"))
    is_trial: Mapped[bool] = mapped_column(Boolean, default=False)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    # Consecutive failed renewal charges; two end the subscription (SPEC §4.3).
    renewal_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_renewal_attempt_at: Mapped[datetime | None]
    # The last expiry reminder sent (3, 2 or 1 days before) and the end date it was about: a new end date
    # (a renewal) starts the reminders over.
    last_reminder_days: Mapped[int | None] = mapped_column(Integer)
    last_reminder_for: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("ends_at >= starts_at", name="ends_after_start"),
        Index("ix_subscriptions_status_ends_at", "status", "ends_at"),
    )


class TrialGrant(IdMixin, CreatedMixin, Base):
    """One row per person who had the trial; unique on both the user and the Telegram account, so a user who
    deletes themselves and registers again does not get a second trial."""

    __tablename__ = "trial_grants"

    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"), unique=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    subscription_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("subscriptions.id", ondelete="SET NULL"))
