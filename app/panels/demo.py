"""The demo panel: a VPN panel that keeps its accounts in our own database (SPEC §1.1).

It stands in for Marzban or Remnawave in `vpnshop demo`, so each rule copies one of them
(shared/reference/panels_api.md):

* Status is computed the way Marzban computes it. A disabled account stays disabled. An account at or over its
  traffic limit is `limited`; this is checked before expiry, in the same order as Marzban's review job. An
  account past its expiry is `expired`. Everything else is `active`. Limits and expiry act at once when they
  change, and expiry by the clock alone is applied whenever the account is read.
* A revoke rotates both the subscription id and the VLESS uuid, as Remnawave does, so the old subscription URL
  answers 404.
* A device limit is enforced on subscription fetches through `x-hwid`, as in Remnawave's HWID feature (§2.5).
* Each call is one short transaction of its own, like a request to a remote panel. If the database is down or
  locked, the call raises PanelUnavailable, so the outbox retries it later.

Several demo panels can share the tables. `server_name` keeps their accounts and nodes apart, so a user can be
moved between two demo servers exactly as between two real panels.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import insert_for, transaction
from app.kit.clock import ensure_utc, utcnow
from app.models.demo_panel import DemoAccountStatus, DemoPanelAccount, DemoPanelDevice, DemoPanelNode
from app.panels.base import (
    AccountChanges,
    AccountExists,
    AccountNotFound,
    AccountRef,
    AccountSpec,
    AccountStatus,
    Device,
    NodeInfo,
    PanelAccount,
    PanelError,
    PanelUnavailable,
    SystemInfo,
)

VERSION = "vpnshop-demo 1.0"
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
HWID_RE = re.compile(r"^[A-Za-z0-9=_.:-]{1,64}$")
NOTE_LIMIT = 500  # Marzban's limit; the Marzban adapter trims notes to it, and so do we
ONLINE_WINDOW = timedelta(minutes=5)  # "online now", as in Remnawave's onlineStats.onlineNow
PROFILE_UPDATE_HOURS = 12  # Marzban's default profile-update-interval
REALITY_SNI = "www.microsoft.com"


@dataclass(frozen=True, slots=True)
class DemoNode:
    name: str
    title: str
    flag: str
    port: int = 443


DEMO_NODES: tuple[DemoNode, ...] = (
    DemoNode("nl-1", "Netherlands", "🇳🇱"),
    DemoNode("de-1", "Germany", "🇩🇪"),
    DemoNode("fi-1", "Finland", "🇫🇮"),
)


class DemoPanel:
    """A VpnPanel backed by the `demo_panel_*` tables. Its subscription URLs are served by
    `app.panels.demo_api` under `{public_base_url}/demo-panel/sub/{short_id}`."""

    kind = "demo"
    supports_devices = True
    off_statuses = frozenset({"disabled"})  # as Marzban

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        public_base_url: str,
        server_name: str = "demo",
    ) -> None:
        if not 1 <= len(server_name) <= 64:
            raise ValueError("server_name must be 1 to 64 characters")
        self._sessionmaker = sessionmaker
        self._base_url = public_base_url.rstrip("/")
        self.server_name = server_name

    # --- accounts ------------------------------------------------------------------------------------------

    async def create_account(self, spec: AccountSpec) -> PanelAccount:
        if not USERNAME_RE.match(spec.username):
            raise PanelError(f"demo: invalid username {spec.username!r} (3-64 of A-Z a-z 0-9 _ . @ -)")
        now = utcnow()
        account = DemoPanelAccount(
            server_name=self.server_name,
            username=spec.username,
            vless_uuid=str(uuid.uuid4()),
            short_id=new_short_id(),
            status=DemoAccountStatus.ACTIVE if spec.enabled else DemoAccountStatus.DISABLED,
            expire_at=aware(spec.expire_at),
            traffic_limit_bytes=limit_or_none(spec.traffic_limit_bytes, "traffic limit"),
            used_traffic_bytes=0,
            lifetime_traffic_bytes=0,
            device_limit=limit_or_none(spec.device_limit, "device limit"),
            note=spec.note[:NOTE_LIMIT],
            telegram_id=spec.telegram_id,
        )
        settle_status(account, now)
        try:
            async with self._unit() as session:
                session.add(account)
                await session.flush()
                return self._panel_account(account, now)
        except IntegrityError as exc:
            # The uuid and short id are random (122 and 96 bits), so the clash is the username.
            raise AccountExists(f"demo: account {spec.username!r} already exists") from exc

    async def get_account(self, ref: AccountRef) -> PanelAccount:
        now = utcnow()
        async with self._unit() as session:
            account = await session.scalar(select(DemoPanelAccount).where(*self._match(ref.username)))
            if account is None:
                raise self._not_found(ref.username)
            return self._panel_account(account, now)

    async def modify_account(self, ref: AccountRef, changes: AccountChanges) -> PanelAccount:
        return await self._change(ref.username, lambda account, _now: apply_changes(account, changes))

    async def delete_account(self, ref: AccountRef) -> None:
        async with self._unit() as session:
            ids = select(DemoPanelAccount.id).where(*self._match(ref.username)).scalar_subquery()
            # The FK cascades too, but SQLite enforces it only on connections with PRAGMA foreign_keys=ON.
            await session.execute(delete(DemoPanelDevice).where(DemoPanelDevice.account_id == ids))
            await session.execute(delete(DemoPanelAccount).where(*self._match(ref.username)))

    async def reset_traffic(self, ref: AccountRef) -> PanelAccount:
        """Zero the used traffic; the lifetime total keeps it. A limited account becomes active again, while a
        disabled one stays disabled (unlike Marzban's reset quirk, which the Marzban adapter undoes too)."""

        def reset(account: DemoPanelAccount, _now: datetime) -> None:
            account.used_traffic_bytes = 0

        return await self._change(ref.username, reset)

    async def revoke_subscription(self, ref: AccountRef) -> PanelAccount:
        def revoke(account: DemoPanelAccount, _now: datetime) -> None:
            account.short_id = new_short_id()
            account.vless_uuid = str(uuid.uuid4())

        return await self._change(ref.username, revoke)

    async def subscription_links(self, url: str) -> list[str] | None:
        """What `fetch_subscription` would serve for `url` (one of ours), read without recording a fetch or a
        device; None when the id is unknown or revoked."""
        path, _, short_id = url.rstrip("/").rpartition("/")
        if not path.endswith("/demo-panel/sub"):
            return None  # not a link of a demo panel: it serves nothing
        now = utcnow()
        async with self._unit() as session:
            account = await session.scalar(select(DemoPanelAccount).where(DemoPanelAccount.short_id == short_id))
        if account is None:
            return None
        if effective_status(account, now) != "active":
            return []
        return vless_links(account.server_name, account.vless_uuid)

    async def iter_accounts(self, page_size: int = 500) -> AsyncIterator[list[PanelAccount]]:
        """Pages in id order, keyed by the last id seen, so accounts created or deleted during the walk never
        shift others onto a page already read. No transaction stays open while the caller holds a page."""
        if page_size < 1:
            raise ValueError("page_size must be positive")
        last_id = 0
        while True:
            now = utcnow()
            async with self._unit() as session:
                query = (
                    select(DemoPanelAccount)
                    .where(DemoPanelAccount.server_name == self.server_name, DemoPanelAccount.id > last_id)
                    .order_by(DemoPanelAccount.id)
                    .limit(page_size)
                )
                rows = (await session.scalars(query)).all()
                page = [self._panel_account(row, now) for row in rows]
            if not rows:
                return
            yield page
            if len(rows) < page_size:
                return
            last_id = rows[-1].id

    async def simulate_usage(
        self, username: str, upload: int, download: int, *, at: datetime | None = None
    ) -> PanelAccount:
        """Record traffic as a node would report it (demos and tests). Only an active account moves traffic:
        the nodes refuse the others, as xray does once a real panel drops the user from its config."""
        if upload < 0 or download < 0:
            raise ValueError("traffic cannot be negative")
        moment = aware(at)

        def record(account: DemoPanelAccount, now: datetime) -> None:
            if effective_status(account, now) != "active" or upload + download == 0:
                return
            account.used_traffic_bytes += upload + download
            account.lifetime_traffic_bytes += upload + download
            seen = moment or now
            account.online_at = seen if account.online_at is None else max(account.online_at, seen)

        return await self._change(username, record)

    # --- devices -------------------------------------------------------------------------------------------

    async def list_devices(self, ref: AccountRef) -> list[Device]:
        async with self._unit() as session:
            account_id = await self._account_id(session, ref.username)
            query = select(DemoPanelDevice).where(DemoPanelDevice.account_id == account_id)
            devices = await session.scalars(query.order_by(DemoPanelDevice.id))
            return [to_device(device) for device in devices]

    async def delete_device(self, ref: AccountRef, hwid: str) -> None:
        """Forget one device, freeing its slot; an unknown hwid is not an error (the device is gone either way)."""
        async with self._unit() as session:
            account_id = await self._account_id(session, ref.username)
            await session.execute(
                delete(DemoPanelDevice).where(DemoPanelDevice.account_id == account_id, DemoPanelDevice.hwid == hwid)
            )

    # --- nodes and system ----------------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        async with self._unit() as session:
            query = select(DemoPanelNode).where(DemoPanelNode.server_name == self.server_name)
            stored = {row.name: row for row in await session.scalars(query)}
        return [self._node_info(node, stored.get(node.name)) for node in DEMO_NODES]

    async def set_node_online(self, name: str, online: bool) -> NodeInfo:
        """Switch a demo node off or on, so health pages, alerts and diagnostics can be shown working."""
        node = next((node for node in DEMO_NODES if node.name == name), None)
        if node is None:
            raise PanelError(f"demo: no node named {name!r}")
        now = utcnow()
        values: dict[str, Any] = {
            "server_name": self.server_name,
            "name": node.name,
            "address": node_address(self.server_name, node),
            "port": node.port,
            "is_online": online,
            "created_at": now,
            "updated_at": now,
        }
        async with self._unit() as session:
            await session.execute(upsert_node(session, values))
            row = await session.scalar(
                select(DemoPanelNode).where(DemoPanelNode.server_name == self.server_name, DemoPanelNode.name == name)
            )
            return self._node_info(node, row)

    async def system(self) -> SystemInfo:
        now = utcnow()
        account = DemoPanelAccount
        # The same rule as effective_status(), in SQL: only the stored "disabled" is trusted as is.
        active = and_(
            account.status != DemoAccountStatus.DISABLED,
            or_(account.traffic_limit_bytes.is_(None), account.used_traffic_bytes < account.traffic_limit_bytes),
            or_(account.expire_at.is_(None), account.expire_at > now),
        )
        online = account.online_at >= now - ONLINE_WINDOW
        query = select(func.count(), func.count().filter(active), func.count().filter(online)).where(
            account.server_name == self.server_name
        )
        async with self._unit() as session:
            total, active_count, online_count = (await session.execute(query)).one()
        return SystemInfo(version=VERSION, total_users=total, active_users=active_count, online_users=online_count)

    async def aclose(self) -> None:
        """Nothing to close: the sessionmaker belongs to the application."""

    # --- plumbing ------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[AsyncSession]:
        """One short transaction. A database that is unreachable, locked or out of connections is reported
        the way a remote panel that is down would be, so queued operations are retried rather than dropped."""
        try:
            async with transaction(self._sessionmaker) as session:
                yield session
        except (OperationalError, InterfaceError, PoolTimeoutError, OSError) as exc:
            raise PanelUnavailable(f"demo: the panel database is unavailable: {exc}") from exc

    async def _change(self, username: str, mutate: Callable[[DemoPanelAccount, datetime], None]) -> PanelAccount:
        """Read, change and write one account, then recompute its status."""
        now = utcnow()
        async with self._unit() as session:
            account = await lock_account(session, self._match(username), now)
            if account is None:
                raise self._not_found(username)
            mutate(account, now)
            settle_status(account, now)
            return self._panel_account(account, now)

    async def _account_id(self, session: AsyncSession, username: str) -> int:
        account_id = await session.scalar(select(DemoPanelAccount.id).where(*self._match(username)))
        if account_id is None:
            raise self._not_found(username)
        return account_id

    def _match(self, username: str) -> tuple[Any, ...]:
        return (DemoPanelAccount.server_name == self.server_name, DemoPanelAccount.username == username)

    def _not_found(self, username: str) -> AccountNotFound:
        return AccountNotFound(f"demo: no account {username!r} on {self.server_name!r}")

    def subscription_url(self, short_id: str) -> str:
        return f"{self._base_url}/demo-panel/sub/{short_id}"

    def _panel_account(self, account: DemoPanelAccount, now: datetime) -> PanelAccount:
        return PanelAccount(
            username=account.username,
            panel_id=str(account.id),
            status=effective_status(account, now),
            expire_at=account.expire_at,
            traffic_limit_bytes=account.traffic_limit_bytes,
            used_traffic_bytes=account.used_traffic_bytes,
            lifetime_traffic_bytes=account.lifetime_traffic_bytes,
            device_limit=account.device_limit,
            subscription_url=self.subscription_url(account.short_id),
            # Like Marzban's `links`: the account's keys whatever its status; the subscription itself is what
            # withholds them from an inactive account.
            links=vless_links(account.server_name, account.vless_uuid),
            online_at=account.online_at,
            sub_updated_at=account.sub_updated_at,
            sub_last_user_agent=account.sub_last_user_agent,
            created_at=account.created_at,
            note=account.note or "",
            telegram_id=account.telegram_id,
        )

    def _node_info(self, node: DemoNode, row: DemoPanelNode | None) -> NodeInfo:
        online = row is None or row.is_online
        return NodeInfo(
            external_id=node.name,
            name=f"{node.flag} {node.title} ({node.name})",
            address=node_address(self.server_name, node),
            port=node.port,
            is_online=online,
            is_enabled=True,
            message="" if online else "Connection lost (switched off in the demo panel)",
        )


# --------------------------------------------------------------------------------------------------------------
# Account rules


def effective_status(account: DemoPanelAccount, now: datetime) -> AccountStatus:
    """The status a real panel would show now; see the module docstring for the order of the checks."""
    if account.status == DemoAccountStatus.DISABLED:
        return "disabled"
    limit = account.traffic_limit_bytes
    if limit is not None and account.used_traffic_bytes >= limit:
        return "limited"
    if account.expire_at is not None and account.expire_at <= now:
        return "expired"
    return "active"


def settle_status(account: DemoPanelAccount, now: datetime) -> None:
    """Store the status after a write; a disabled account stays disabled whatever else changed."""
    if account.status != DemoAccountStatus.DISABLED:
        account.status = DemoAccountStatus(effective_status(account, now))


def apply_changes(account: DemoPanelAccount, changes: AccountChanges) -> None:
    if changes.clear_expiry:
        account.expire_at = None
    elif changes.expire_at is not None:
        account.expire_at = aware(changes.expire_at)
    if changes.traffic_limit_bytes is not None:
        account.traffic_limit_bytes = limit_or_none(changes.traffic_limit_bytes, "traffic limit")
    if changes.device_limit is not None:
        # A lower limit keeps the devices already registered, as Remnawave does; it only stops new ones.
        account.device_limit = limit_or_none(changes.device_limit, "device limit")
    if changes.note is not None:
        account.note = changes.note[:NOTE_LIMIT]
    if changes.enabled is not None:
        # ACTIVE only means "not disabled" here; settle_status() turns it into limited or expired if needed.
        account.status = DemoAccountStatus.ACTIVE if changes.enabled else DemoAccountStatus.DISABLED


def limit_or_none(value: int | None, what: str) -> int | None:
    """A stored limit: 0 and None both mean unlimited (AccountChanges uses 0, AccountSpec None)."""
    if value is None or value == 0:
        return None
    if value < 0:
        raise PanelError(f"demo: the {what} cannot be negative ({value})")
    return value


def aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError("naive datetime given to the demo panel")
    return None if moment is None else ensure_utc(moment)


def new_short_id() -> str:
    """16 URL-safe characters, the length of Remnawave's default shortUuid."""
    return secrets.token_urlsafe(12)


async def lock_account(session: AsyncSession, match: tuple[Any, ...], now: datetime) -> DemoPanelAccount | None:
    """Load an account for a read-modify-write, locked. The UPDATE comes first on purpose. On PostgreSQL it
    takes the row lock. On SQLite it takes the write lock, because the driver opens the transaction only at
    the first write. Concurrent changes to one account therefore wait for each other instead of overwriting."""
    statement = (
        update(DemoPanelAccount)
        .where(*match)
        .values(updated_at=now)
        .returning(DemoPanelAccount)
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(statement)


def upsert_node(session: AsyncSession, values: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT DO UPDATE for a node state."""
    statement = insert_for(session, DemoPanelNode).values(**values)
    return statement.on_conflict_do_update(
        index_elements=["server_name", "name"],
        set_={"is_online": statement.excluded.is_online, "updated_at": statement.excluded.updated_at},
    )


def to_device(device: DemoPanelDevice) -> Device:
    return Device(
        hwid=device.hwid,
        platform=device.platform,
        os_version=device.os_version,
        model=device.model,
        user_agent=device.user_agent,
        created_at=device.created_at,
    )


# --------------------------------------------------------------------------------------------------------------
# Links


def node_address(server_name: str, node: DemoNode) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", server_name.lower()).strip("-") or "demo"
    return f"{node.name}.{label}.vpnshop.local"


def vless_links(server_name: str, vless_uuid: str) -> list[str]:
    """One VLESS+Reality share link per demo node, shaped like a real panel's links."""
    return [vless_link(vless_uuid, node_address(server_name, node), node) for node in DEMO_NODES]


def vless_link(vless_uuid: str, address: str, node: DemoNode) -> str:
    # Reality's public key and short id are derived from the address, so a link changes only when the
    # account's uuid does (a revoke), as on a real server whose keys are fixed.
    digest = hashlib.sha256(f"vpnshop-demo-reality:{address}".encode()).digest()
    query = {
        "type": "tcp",
        "security": "reality",
        "encryption": "none",
        "flow": "xtls-rprx-vision",
        "sni": REALITY_SNI,
        "fp": "chrome",
        "pbk": base64.urlsafe_b64encode(digest).decode().rstrip("="),  # 43 characters, like an X25519 key
        "sid": digest[-4:].hex(),
    }
    remark = f"{node.flag} {node.title} [VLESS - tcp]"
    return f"vless://{vless_uuid}@{address}:{node.port}?{urlencode(query)}#{quote(remark)}"


# --------------------------------------------------------------------------------------------------------------
# The public subscription (served by app.panels.demo_api)


@dataclass(frozen=True, slots=True)
class SubscriptionClient:
    """What an app says about itself when it fetches a subscription: its User-Agent and Remnawave's HWID headers."""

    user_agent: str | None = None
    hwid: str | None = None
    platform: str | None = None
    os_version: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionReply:
    links: list[str]
    headers: dict[str, str]

    @property
    def body(self) -> str:
        """Base64 of the newline-joined links: the default ("v2ray") format of both real panels."""
        return base64.b64encode("\n".join(self.links).encode()).decode()


async def fetch_subscription(
    sessionmaker: async_sessionmaker[AsyncSession], short_id: str, client: SubscriptionClient
) -> SubscriptionReply | None:
    """Serve one fetch of a subscription URL; None means 404 (unknown or revoked id).

    Records when the fetch happened and with which User-Agent, as Marzban does. Only an active account gets its
    keys; any other gets 200 with its usage headers and no keys. That is Remnawave's behaviour, minus the
    placeholder entries it can add to name the reason. With a device limit, the device must present an
    `x-hwid`; a new one is registered while a slot is free (§2.5).
    """
    if len(short_id) > 64:
        return None
    now = utcnow()
    async with transaction(sessionmaker) as session:
        account = await record_fetch(session, short_id, client.user_agent, now)
        if account is None:
            return None
        headers = profile_headers(account)
        serve = effective_status(account, now) == "active"
        if serve and account.device_limit is not None:
            serve, hwid_headers = await admit_device(session, account, client)
            headers.update(hwid_headers)
        links = vless_links(account.server_name, account.vless_uuid) if serve else []
    return SubscriptionReply(links=links, headers=headers)


async def record_fetch(
    session: AsyncSession, short_id: str, user_agent: str | None, now: datetime
) -> DemoPanelAccount | None:
    # Writing first also locks the account, so two devices fetching at once cannot both take the last slot.
    statement = (
        update(DemoPanelAccount)
        .where(DemoPanelAccount.short_id == short_id)
        .values(sub_updated_at=now, sub_last_user_agent=clip(user_agent, 255))
        .returning(DemoPanelAccount)
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(statement)


def profile_headers(account: DemoPanelAccount) -> dict[str, str]:
    """Marzban's subscription headers. Like both real panels, all traffic is reported as download."""
    expire = int(account.expire_at.timestamp()) if account.expire_at else 0
    title = f"vpnshop demo · {account.server_name}"
    return {
        "content-disposition": f'attachment; filename="{account.username}"',
        "profile-title": "base64:" + base64.b64encode(title.encode()).decode(),
        "profile-update-interval": str(PROFILE_UPDATE_HOURS),
        "subscription-userinfo": (
            f"upload=0; download={account.used_traffic_bytes}; "
            f"total={account.traffic_limit_bytes or 0}; expire={expire}"
        ),
    }


async def admit_device(
    session: AsyncSession, account: DemoPanelAccount, client: SubscriptionClient
) -> tuple[bool, dict[str, str]]:
    """Remnawave's HWID check: whether this device may have the keys, and the headers that tell the app why not.

    No usable `x-hwid` → `x-hwid-not-supported`. A new device beyond the limit → `x-hwid-max-devices-reached`,
    and it is not registered. A device already known is served again and its details are refreshed."""
    headers = {"x-hwid-active": "true"}
    hwid = (client.hwid or "").strip()
    if not HWID_RE.match(hwid):
        headers["x-hwid-not-supported"] = "true"
        return False, headers
    device = await session.scalar(
        select(DemoPanelDevice).where(DemoPanelDevice.account_id == account.id, DemoPanelDevice.hwid == hwid)
    )
    if device is None:
        count_query = select(func.count()).where(DemoPanelDevice.account_id == account.id)
        registered = await session.scalar(count_query) or 0
        if account.device_limit is not None and registered >= account.device_limit:
            headers["x-hwid-max-devices-reached"] = "true"
            return False, headers
        device = DemoPanelDevice(account_id=account.id, hwid=hwid)
        session.add(device)
    device.platform = clip(client.platform, 64) or device.platform
    device.os_version = clip(client.os_version, 64) or device.os_version
    device.model = clip(client.model, 128) or device.model
    device.user_agent = clip(client.user_agent, 255) or device.user_agent
    return True, headers


def clip(value: str | None, limit: int) -> str | None:
    value = (value or "").strip()
    return value[:limit] or None
