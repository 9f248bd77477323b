"""Customers and the ways they sign in (Telegram, browser sessions, one-time login codes, OIDC identities)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, CreatedMixin, IdMixin, TimestampsMixin


class User(IdMixin, TimestampsMixin, Base):
    __tablename__ = "users"

    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(8), default="ru")
    # The currency the customer switched to on the plan list; None: chosen by their language (payments/pricing.py).
    currency: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    referral_code: Mapped[str] = mapped_column(String(32), unique=True)
    referrer_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"), index=True)
    is_blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    block_reason: Mapped[str | None] = mapped_column(Text)
    marketing_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the bot gets 403 (the user blocked the bot); cleared when they come back.
    unreachable_since: Mapped[datetime | None]
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None]
    # The customer's current subscription (the one ending last, pending checkouts aside) and the facts the
    # customers table filters on, so a status filter reads the user row alone and has an index to walk. Kept by
    # the database itself: triggers on `subscriptions` (migration 0011) recompute them whenever a subscription
    # is inserted, deleted, or changes owner, status, end date or trial flag, whatever code or SQL does it.
    # Never written by the application.
    current_subscription_id: Mapped[int | None] = mapped_column(BigId)
    current_status: Mapped[str | None] = mapped_column(String(32))
    current_ends_at: Mapped[datetime | None]
    current_is_trial: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_users_created_at", "created_at"),
        Index("ix_users_current_status_created_at", "current_status", "created_at", "id"),
    )


class UserIdentity(IdMixin, CreatedMixin, Base):
    """A browser sign-in linked to a user in advance (OIDC subject, Telegram Login Widget id)."""

    __tablename__ = "user_identities"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    last_used_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("provider", "subject"),)


class BrowserSession(IdMixin, CreatedMixin, Base):
    """A revocable browser-cabinet session; the cookie holds a random token, we keep only its hash."""

    __tablename__ = "browser_sessions"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class LoginCode(IdMixin, CreatedMixin, Base):
    """A single-use login link or short code, bound to one user, valid for minutes."""

    __tablename__ = "login_codes"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "link" or "code"
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
