"""Editable content: FAQ, message texts per language, typed system settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.clock import utcnow
from app.models.base import Base, BigId, IdMixin, TimestampsMixin


class FaqCategory(IdMixin, Base):
    __tablename__ = "faq_categories"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    titles: Mapped[dict[str, Any]]  # {"ru": "...", "en": "..."}
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class FaqItem(IdMixin, TimestampsMixin, Base):
    """One answer in one language; translations of the same entry share `slug`."""

    __tablename__ = "faq_items"

    category_id: Mapped[int] = mapped_column(BigId, ForeignKey("faq_categories.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("slug", "language"),)


class MessageText(IdMixin, TimestampsMixin, Base):
    """A staff-editable text (notification, bot answer) overriding the catalog default for one language."""

    __tablename__ = "message_texts"

    key: Mapped[str] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff.id", ondelete="SET NULL"))

    __table_args__ = (UniqueConstraint("key", "language"),)


class SystemSetting(Base):
    """A typed key/value the staff can change at run time (trial days, referral bonuses, support contact)."""

    __tablename__ = "system_settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]]  # {"v": <value>} so scalars and lists share one JSON column
    value_type: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff.id", ondelete="SET NULL"))
