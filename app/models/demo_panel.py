"""The demo panel's own storage: the accounts, HWID devices and node states of the built-in panel.

These tables play the part of a real panel's database (Marzban's `users`, Remnawave's `hwid_user_devices`), so
the shop's own tables never learn about them: the shop talks to the demo panel only through `VpnPanel`.
Several demo panels can share the tables; `server_name` keeps their accounts and nodes apart, as separate
panels would.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, IdMixin, TimestampsMixin, str_enum


class DemoAccountStatus(enum.StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    LIMITED = "limited"
    EXPIRED = "expired"


class DemoPanelAccount(IdMixin, TimestampsMixin, Base):
    """One VLESS account. `status` is what the last write decided; expiry by the clock alone is applied when
    the account is read (the panel computes it lazily instead of running Marzban's review job)."""

    __tablename__ = "demo_panel_accounts"

    server_name: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(64))
    vless_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    # The secret part of the subscription URL, like Remnawave's shortUuid; rotated by a revoke.
    short_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[DemoAccountStatus] = mapped_column(str_enum(DemoAccountStatus, "demo_account_status"))
    expire_at: Mapped[datetime | None]
    traffic_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_traffic_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_traffic_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    device_limit: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    online_at: Mapped[datetime | None]
    sub_updated_at: Mapped[datetime | None]
    sub_last_user_agent: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        UniqueConstraint("server_name", "username"),
        # Keyset paging walks one panel's accounts in id order.
        Index("ix_demo_panel_accounts_server_name_id", "server_name", "id"),
        # None means unlimited, so a stored limit is always positive.
        CheckConstraint("traffic_limit_bytes IS NULL OR traffic_limit_bytes > 0", name="positive_traffic_limit"),
        CheckConstraint("device_limit IS NULL OR device_limit > 0", name="positive_device_limit"),
        CheckConstraint(
            "used_traffic_bytes >= 0 AND lifetime_traffic_bytes >= used_traffic_bytes", name="sane_traffic"
        ),
    )


class DemoPanelDevice(IdMixin, TimestampsMixin, Base):
    """A device that fetched the subscription with an `x-hwid` header while the account had a device limit."""

    __tablename__ = "demo_panel_devices"

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("demo_panel_accounts.id", ondelete="CASCADE"))
    hwid: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    # The unique index also serves "devices of this account" lookups (account_id leads).
    __table_args__ = (UniqueConstraint("account_id", "hwid"),)


class DemoPanelNode(IdMixin, TimestampsMixin, Base):
    """The state of one demo node; a node without a row is online (rows appear when staff switch one off)."""

    __tablename__ = "demo_panel_nodes"

    server_name: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    is_online: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("server_name", "name"),)
