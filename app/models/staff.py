"""Staff accounts, their roles, and bearer tokens for the admin JSON API."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String
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


class ApiToken(IdMixin, CreatedMixin, Base):
    """An access or refresh token of the admin API; only the hash is stored."""

    __tablename__ = "api_tokens"

    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "access" or "refresh"
    name: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
