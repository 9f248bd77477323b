"""The one interface every VPN panel speaks (Marzban, Remnawave, the demo panel).

Accounts are addressed by an `AccountRef`: our deterministic `username` (so a retried create can never make a
second account) plus the panel's own id once we know it (Remnawave 2.x uuid, 3.x numeric id). Adapters turn
every panel error into one of the exceptions below, so the provisioning service never sees HTTP.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

AccountStatus = Literal["active", "disabled", "limited", "expired", "on_hold"]


class PanelError(Exception):
    """The panel answered with something we cannot use (malformed JSON, unexpected shape or status)."""


class PanelUnavailable(PanelError):
    """The panel is down, timing out or refusing us; the operation may be retried later."""


class PanelAuthError(PanelError):
    """Our credentials were rejected even after one fresh login."""


class PanelForbidden(PanelAuthError):
    """The credentials are valid but may not use this one route (a Remnawave 2.8+ API token without its scope)."""


class AccountExists(PanelError):
    """An account with this username already exists on the panel."""


class AccountNotFound(PanelError):
    """The panel has no such account."""


@dataclass(frozen=True, slots=True)
class AccountRef:
    username: str
    panel_id: str | None = None


@dataclass(slots=True)
class AccountSpec:
    """What an account should look like. `None` limits mean unlimited; `expire_at=None` means never."""

    username: str
    expire_at: datetime | None
    traffic_limit_bytes: int | None = None
    device_limit: int | None = None
    enabled: bool = True
    # Carries our ownership mark (app.panels.ownership); panels keep it in Marzban `note`, Remnawave `description`.
    note: str = ""
    telegram_id: int | None = None
    traffic_strategy: str = "no_reset"  # TrafficStrategy: "no_reset" | "month"
    # Remnawave internal squads (uuids or names) for a new account; None: the server's default.
    squads: list[str] | None = None


@dataclass(slots=True)
class PanelAccount:
    username: str
    panel_id: str
    status: AccountStatus
    expire_at: datetime | None
    traffic_limit_bytes: int | None
    used_traffic_bytes: int
    lifetime_traffic_bytes: int
    device_limit: int | None
    subscription_url: str
    links: list[str] = field(default_factory=list)
    online_at: datetime | None = None
    sub_updated_at: datetime | None = None
    sub_last_user_agent: str | None = None
    created_at: datetime | None = None
    note: str | None = None
    telegram_id: int | None = None
    traffic_strategy: str | None = None  # None: the panel has no such setting

    @property
    def ref(self) -> AccountRef:
        return AccountRef(self.username, self.panel_id)


@dataclass(slots=True)
class AccountChanges:
    """A partial update; fields left as None are not changed. Use 0 for "unlimited" limits."""

    expire_at: datetime | None = None
    clear_expiry: bool = False
    traffic_limit_bytes: int | None = None
    device_limit: int | None = None
    enabled: bool | None = None
    note: str | None = None
    traffic_strategy: str | None = None


@dataclass(slots=True)
class Device:
    hwid: str
    platform: str | None = None
    os_version: str | None = None
    model: str | None = None
    user_agent: str | None = None
    created_at: datetime | None = None


@dataclass(slots=True)
class NodeInfo:
    external_id: str
    name: str
    address: str
    port: int | None
    is_online: bool
    is_enabled: bool
    message: str = ""
    users_online: int | None = None
    traffic_used_bytes: int | None = None


@dataclass(slots=True)
class SystemInfo:
    version: str
    total_users: int
    active_users: int
    online_users: int | None = None


class VpnPanel(Protocol):
    """One panel connection. Every method may raise PanelUnavailable, PanelAuthError or PanelError."""

    kind: str
    supports_devices: bool
    # Statuses that already count as "off" for an account we want disabled: a panel that refuses to disable
    # anything but an active account (Remnawave) must not be asked again and again.
    off_statuses: frozenset[str]

    async def create_account(self, spec: AccountSpec) -> PanelAccount:
        """Create a VLESS account; raises AccountExists if the username is taken."""

    async def get_account(self, ref: AccountRef) -> PanelAccount:
        """The account as the panel sees it now; raises AccountNotFound."""

    async def modify_account(self, ref: AccountRef, changes: AccountChanges) -> PanelAccount:
        """Change expiry, limits or enabled state; raises AccountNotFound."""

    async def delete_account(self, ref: AccountRef) -> None:
        """Delete the account; deleting one that is already gone is not an error."""

    async def reset_traffic(self, ref: AccountRef) -> PanelAccount: ...

    async def revoke_subscription(self, ref: AccountRef) -> PanelAccount:
        """Invalidate the old subscription link and return the account with its new one."""

    def iter_accounts(self, page_size: int = 500) -> AsyncIterator[list[PanelAccount]]:
        """Every account on the panel, one page at a time."""

    async def subscription_links(self, url: str) -> list[str] | None:
        """What a VPN client importing `url` gets: its configs (empty for an inactive account), or None when the
        link is dead. Read-only: it neither registers a device nor counts as the client's fetch."""

    async def list_devices(self, ref: AccountRef) -> list[Device]: ...

    async def delete_device(self, ref: AccountRef, hwid: str) -> None: ...

    async def nodes(self) -> list[NodeInfo]: ...

    async def system(self) -> SystemInfo: ...

    async def aclose(self) -> None: ...


_TG = re.compile(r"\btg:(\d+)\b")


def telegram_id_in(note: str | None) -> int | None:
    """The `tg:<id>` our notes carry (Marzban has no Telegram field of its own)."""
    found = _TG.search(note or "")
    return int(found.group(1)) if found else None
