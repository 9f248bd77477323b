"""Panel connections (servers), their nodes, the VPN accounts we keep there, and daily usage."""

from __future__ import annotations

import enum
import secrets
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, IdMixin, TimestampsMixin, str_enum
from app.models.plans import TrafficStrategy


def new_owner_key() -> str:
    """The secret half of an account's ownership mark: random, so a reused id (a restored backup) never matches."""
    return secrets.token_hex(12)


class PanelKind(enum.StrEnum):
    MARZBAN = "marzban"
    REMNAWAVE = "remnawave"
    DEMO = "demo"


class Server(IdMixin, TimestampsMixin, Base):
    __tablename__ = "servers"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    panel_kind: Mapped[PanelKind] = mapped_column(str_enum(PanelKind, "panel_kind"))
    api_url: Mapped[str] = mapped_column(String(512))
    credentials_encrypted: Mapped[str] = mapped_column(Text)
    api_version: Mapped[str | None] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(String(64))
    weight: Mapped[int] = mapped_column(Integer, default=1)
    capacity: Mapped[int] = mapped_column(Integer, default=1000)
    # In use at all: the health and sync jobs look after it.
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Placement: new accounts may go here. Off while staff drain it; its customers are still synced.
    accepts_new_accounts: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    health_checked_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("weight > 0", name="positive_weight"),
        CheckConstraint("capacity > 0", name="positive_capacity"),
    )


class Node(IdMixin, TimestampsMixin, Base):
    __tablename__ = "nodes"

    server_id: Mapped[int] = mapped_column(BigId, ForeignKey("servers.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int | None] = mapped_column(Integer)
    is_online: Mapped[bool] = mapped_column(Boolean, default=False)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    message: Mapped[str | None] = mapped_column(Text)
    users_online: Mapped[int | None] = mapped_column(Integer)
    status_changed_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("server_id", "external_id"),)


class VpnAccount(IdMixin, TimestampsMixin, Base):
    """Our record of one panel account. `panel_username` is stored before the create, so a retried create finds
    it; `owner_key` is the ownership mark written on the panel account (Marzban note, Remnawave description), so
    a same-name account of someone else (another shop, a restored backup's reused ids) is never taken for ours."""

    __tablename__ = "vpn_accounts"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(BigId, ForeignKey("subscriptions.id", ondelete="CASCADE"), unique=True)
    server_id: Mapped[int] = mapped_column(BigId, ForeignKey("servers.id", ondelete="RESTRICT"), index=True)
    panel_username: Mapped[str] = mapped_column(String(64))
    panel_id: Mapped[str | None] = mapped_column(String(64))
    # Random per account; "legacy-…" for accounts made before marks existed (accepted by Telegram id once).
    owner_key: Mapped[str] = mapped_column(String(32), default=new_owner_key)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    subscription_url_encrypted: Mapped[str | None] = mapped_column(Text)
    # Our own revocable token for the /sub/{token} mirror.
    sub_token: Mapped[str] = mapped_column(String(64), unique=True)
    device_limit: Mapped[int | None] = mapped_column(Integer)
    traffic_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    traffic_strategy: Mapped[TrafficStrategy] = mapped_column(
        str_enum(TrafficStrategy, "traffic_strategy"), default=TrafficStrategy.NO_RESET
    )
    used_traffic_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # The panel's never-reset counter at the last sync; daily usage is the growth since then.
    lifetime_traffic_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    online_at: Mapped[datetime | None]
    sub_updated_at: Mapped[datetime | None]
    last_synced_at: Mapped[datetime | None]
    provisioned_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("server_id", "panel_username"),)


class UsageDaily(IdMixin, Base):
    __tablename__ = "usage_daily"

    vpn_account_id: Mapped[int] = mapped_column(BigId, ForeignKey("vpn_accounts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date)
    upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    download_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    connections: Mapped[int] = mapped_column(Integer, default=0)
    unique_ips: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("vpn_account_id", "day"),)
