"""The devices on a customer's VPN account as staff see and remove them. Like the customer's own removal
(app/connect/service.py) these are direct panel calls with a visible result, bounded by a timeout: a panel that
is down gives a clear error and changes nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.connect.service import Connection, _panel_call, devices
from app.kit.errors import AppError, Conflict
from app.kit.field_errors import FieldInvalid
from app.models import Server, Subscription, VpnAccount
from app.panels.base import AccountRef, Device
from app.panels.registry import PanelRegistry


async def connection_of(session: AsyncSession, subscription: Subscription) -> Connection | None:
    row = (
        await session.execute(
            select(VpnAccount, Server)
            .join(Server, Server.id == VpnAccount.server_id)
            .where(VpnAccount.subscription_id == subscription.id)
        )
    ).first()
    return Connection(subscription, *row) if row is not None else None


async def list_devices(session: AsyncSession, subscription: Subscription, panels: PanelRegistry) -> list[Device] | None:
    """The devices the panel has seen; None when there is no account or the panel keeps no device list."""
    connection = await connection_of(session, subscription)
    return None if connection is None else await devices(connection, panels)


async def remove_devices(
    session: AsyncSession, actor: Actor, subscription: Subscription, panels: PanelRegistry, hwids: list[str] | None
) -> list[str]:
    """Remove the named devices (all of them when `hwids` is None); returns the ones removed."""
    connection = await connection_of(session, subscription)
    if connection is None:
        raise Conflict("This subscription has no VPN account yet.", code="no_account")
    panel = panels.for_server(connection.server)
    if not panel.supports_devices:
        raise AppError("This server does not track devices.", code="devices_unsupported", status_code=400)
    ref = AccountRef(connection.account.panel_username, connection.account.panel_id)
    known = [device.hwid for device in await _panel_call(panel.list_devices(ref))] if connection.ready else []
    targets = known if hwids is None else hwids
    if missing := [hwid for hwid in targets if hwid not in known]:
        raise FieldInvalid("hwid", f"Not a device of this account: {', '.join(missing)}.")
    if not targets:
        raise FieldInvalid("hwid", "There are no devices to remove.")
    for hwid in targets:
        await _panel_call(panel.delete_device(ref, hwid))
    record_by(
        session,
        actor,
        action="device.removed",
        entity_type="vpn_account",
        entity_id=connection.account.id,
        before={"devices": known},
        after={"devices": [hwid for hwid in known if hwid not in targets]},
    )
    return targets
