"""Staff accounts, their roles, sign-in sessions of the admin, and bearer tokens for the admin JSON API."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, CreatedMixin, IdMixin, str_enum


class StaffRole(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    SUPPORT = "support"
    MARKETING = "marketing"


class Staff(IdMixin, CreatedMixin, Base):
    __tablename__ = "staff"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[StaffRole] = mapped_column(str_enum(StaffRole, "staff_role"))
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    last_login_at: Mapped[datetime | None]
    # {"grant": [...], "revoke": [...]} over the role's preset (app/admin/permissions.py); owners edit it.
    permission_overrides: Mapped[dict[str, Any] | None]
    # The TOTP secret, encrypted (app/kit/crypto); set once the staff member has confirmed a first code.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    # The last TOTP time step accepted, so one code cannot be replayed within its 30 s window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Consecutive failed password sign-ins; at the limit the account is locked until `locked_until`.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]


class StaffSession(IdMixin, CreatedMixin, Base):
    """A browser sign-in to the admin: the cookie holds a random token, this row only its hash. Separate from
    the customers' sessions, so a customer cookie can never open the admin and revoking one never touches the
    other."""

    __tablename__ = "staff_sessions"

    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    method: Mapped[str] = mapped_column(String(16))  # password | demo
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiToken(IdMixin, CreatedMixin, Base):
    """An access or refresh token of the admin API; only the hash is stored."""

    __tablename__ = "api_tokens"

    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "access" or "refresh"
    name: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
