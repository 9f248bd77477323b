"""Referral bonuses: one row per reward, unique by a dedupe key so concurrent webhooks credit once."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, CreatedMixin, IdMixin, str_enum


class ReferralRewardKind(enum.StrEnum):
    SIGNUP = "signup"
    FIRST_PAYMENT_REFERRER = "first_payment_referrer"
    FIRST_PAYMENT_REFERRED = "first_payment_referred"
    MILESTONE = "milestone"


class ReferralReward(IdMixin, CreatedMixin, Base):
    __tablename__ = "referral_rewards"

    beneficiary_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    source_user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[ReferralRewardKind] = mapped_column(str_enum(ReferralRewardKind, "referral_reward_kind"))
    days: Mapped[int] = mapped_column(Integer)
    milestone: Mapped[int | None] = mapped_column(Integer)
    payment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("payments.id", ondelete="SET NULL"))
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    applied_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("days >= 0", name="days_not_negative"),)
