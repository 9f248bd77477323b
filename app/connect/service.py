"""The customer's connection (SPEC §3.3): the subscription link on our mirror, reissuing it, and the devices
the panel has seen (Remnawave HWID and the demo panel). Reissue and device removal are the customer's own
actions with a visible result, so device calls go to the panel directly, bounded by a timeout; a panel that
is down gives a clear error and changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.kit.errors import AppError, NotFound, RateLimited, ServiceUnavailable
from app.kit.ratelimit import RateLimiter
from app.models import LIVE_STATUSES, Server, Subscription, User, VpnAccount
from app.panels.base import AccountRef, Device, PanelError
from app.panels.registry import PanelRegistry
from app.provisioning import service as provisioning

REISSUES_PER_DAY = 3
PANEL_TIMEOUT_SECONDS = 5.0
T = TypeVar("T")


class NoConnection(NotFound):
    """You have no active subscription to connect with."""

    code = "no_connection"


@dataclass(slots=True)
class Connection:
    subscription: Subscription
    account: VpnAccount
    server: Server

    def link(self, base_url: str) -> str:
        return mirror_link(base_url, self.account.sub_token)

    @property
    def ready(self) -> bool:
        return self.account.provisioned_at is not None


def mirror_link(base_url: str, token: str) -> str:
    """The subscription link customers import: our own revocable mirror, not the panel's domain."""
    return f"{base_url}/sub/{token}"


# Built once (statements built per request were a large part of a page's CPU).
_LIVE_CONNECTION = (
    select(Subscription, VpnAccount, Server)
    .join(VpnAccount, VpnAccount.subscription_id == Subscription.id)
    .join(Server, Server.id == VpnAccount.server_id)
    .where(Subscription.user_id == bindparam("user_id"), Subscription.status.in_(LIVE_STATUSES))
    .order_by(Subscription.ends_at.desc())
    .limit(1)
)


async def connection_for(session: AsyncSession, user: User) -> Connection | None:
    """The user's live subscription with its account and server, or None (no subscription, expired, or no account)."""
    row = (await session.execute(_LIVE_CONNECTION, {"user_id": user.id})).first()
    return Connection(*row) if row is not None else None


async def require_connection(session: AsyncSession, user: User) -> Connection:
    connection = await connection_for(session, user)
    if connection is None:
        raise NoConnection()
    return connection


async def reissue(session: AsyncSession, user: User, limiter: RateLimiter, *, ip: str | None = None) -> Connection:
    """Revoke the old link everywhere and issue a new one; at most REISSUES_PER_DAY times a day."""
    connection = await require_connection(session, user)
    decision = await limiter.hit(f"reissue:{user.id}", REISSUES_PER_DAY, 86400)
    if not decision.allowed:
        raise RateLimited(f"The link can be reset {REISSUES_PER_DAY} times a day.", retry_after=decision.retry_after)
    old_token = connection.account.sub_token
    await provisioning.revoke_and_reissue(session, connection.account)
    audit.record(
        session,
        actor_type="user",
        actor_id=user.id,
        action="vpn_account.reissued",
        entity_type="vpn_account",
        entity_id=connection.account.id,
        before={"token_tail": old_token[-4:]},
        after={"token_tail": connection.account.sub_token[-4:]},
        ip=ip,
    )
    return connection


async def _panel_call(coro: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(coro, PANEL_TIMEOUT_SECONDS)
    except (TimeoutError, PanelError) as exc:
        raise ServiceUnavailable("The VPN server is not answering right now; try again in a few minutes.") from exc


async def devices(connection: Connection, panels: PanelRegistry) -> list[Device] | None:
    """The devices the panel has seen, or None where the panel has no device list."""
    panel = panels.for_server(connection.server)
    if not panel.supports_devices:
        return None
    if not connection.ready:
        return []  # not on the panel yet, so no device can have used it
    ref = AccountRef(connection.account.panel_username, connection.account.panel_id)
    return await _panel_call(panel.list_devices(ref))


async def remove_device(
    session: AsyncSession, user: User, connection: Connection, panels: PanelRegistry, hwid: str, *, ip: str | None
) -> None:
    panel = panels.for_server(connection.server)
    if not panel.supports_devices:
        raise AppError("This server does not track devices.", code="devices_unsupported", status_code=400)
    ref = AccountRef(connection.account.panel_username, connection.account.panel_id)
    known = {device.hwid for device in await _panel_call(panel.list_devices(ref))}
    if hwid not in known:
        raise NotFound("This device is not on your account.")
    await _panel_call(panel.delete_device(ref, hwid))
    audit.record(
        session,
        actor_type="user",
        actor_id=user.id,
        action="device.removed",
        entity_type="vpn_account",
        entity_id=connection.account.id,
        before={"hwid": hwid},
        ip=ip,
    )
