"""Panel webhook events: each panel's payload is parsed into a few typed events, which then update our records.

Webhooks are a shortcut, not the source of truth: they may be lost, repeated or reordered, and the periodic sync
repairs whatever they leave wrong. So an event only sets what it reports directly, repeating one changes nothing,
and kinds we have no use for are ignored rather than refused (panels send many).

Payload shapes are in reference/panels_api.md §1.7 (Marzban) and §2.7 (Remnawave).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.kit.clock import ensure_utc, utcnow
from app.kit.errors import AppError
from app.models import Node, PanelKind, Server, VpnAccount
from app.notifications.service import alert_staff
from app.provisioning.service import DELETED_ON_PANEL


class InvalidPanelEvent(AppError):
    """The webhook body is not a panel event we can read."""

    status_code = 400
    code = "invalid_event"


@dataclass(frozen=True, slots=True)
class UserEvent:
    """Something about one panel account; fields left None are not reported by the event."""

    type: str
    username: str
    status: str | None = None
    online_at: datetime | None = None
    sub_updated_at: datetime | None = None
    deleted: bool = False  # the account was deleted on the panel
    panel_id: str | None = None  # the panel's own id, when the event gives it


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A node's state as an event reports it; None means "not reported"."""

    type: str
    external_id: str
    name: str
    address: str
    port: int | None
    at: datetime | None
    is_online: bool | None = None
    is_enabled: bool | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    type: str


PanelEvent = UserEvent | NodeEvent | IgnoredEvent
Outcome = Literal["changed", "unchanged", "ignored"]

# --- Remnawave (one JSON object per request) ------------------------------------------------------------------

_REMNAWAVE_STATUS = {"ACTIVE": "active", "DISABLED": "disabled", "LIMITED": "limited", "EXPIRED": "expired"}
# Events that say what the status now is, whatever the (possibly older) user snapshot in `data` says.
_REMNAWAVE_STATUS_EVENTS = {
    "user.expired": "expired",
    "user.limited": "limited",
    "user.disabled": "disabled",
    "user.enabled": "active",
}
# Events whose `data` is a fresh user snapshot, so its status is current.
_REMNAWAVE_SNAPSHOT_EVENTS = {"user.created", "user.modified", "user.revoked", "user.traffic_reset"}
_REMNAWAVE_NODE_EVENTS: dict[str, tuple[bool | None, bool | None]] = {  # event -> (is_online, is_enabled)
    "node.connection_lost": (False, None),
    "node.connection_restored": (True, None),
    "node.disabled": (False, False),
    "node.enabled": (None, True),
}


def _remnawave_key(user: Mapping[str, Any]) -> str | None:
    """The user's panel id as we record it: 2.x keys users by uuid, 3.x by numeric id."""
    key = user.get("uuid", user.get("id"))
    return str(key) if isinstance(key, str | int) and not isinstance(key, bool) else None


def parse_remnawave(payload: Any) -> PanelEvent:
    """One Remnawave webhook body (`{scope, event, timestamp, data, meta}`) as an event."""
    body = _object(payload, "the body")
    event = _string(body, "event", "the body")
    at = _moment(body.get("timestamp"), "timestamp")
    if event in _REMNAWAVE_STATUS_EVENTS or event in _REMNAWAVE_SNAPSHOT_EVENTS or event == "user.first_connected":
        user = _object(body.get("data"), f"{event}: data")
        traffic = _optional_object(user.get("userTraffic"), f"{event}: data.userTraffic")
        online_at = _moment(traffic.get("onlineAt"), "data.userTraffic.onlineAt")
        if event == "user.first_connected":
            online_at = online_at or _moment(traffic.get("firstConnectedAt"), "data.userTraffic.firstConnectedAt") or at
        status = _REMNAWAVE_STATUS_EVENTS.get(event)
        if event in _REMNAWAVE_SNAPSHOT_EVENTS:
            status = _status(user.get("status"), _REMNAWAVE_STATUS, f"{event}: data.status")
        username = _string(user, "username", f"{event}: data")
        return UserEvent(event, username, status=status, online_at=online_at, panel_id=_remnawave_key(user))
    if event == "user.deleted":
        user = _object(body.get("data"), f"{event}: data")
        username = _string(user, "username", f"{event}: data")
        return UserEvent(event, username, deleted=True, panel_id=_remnawave_key(user))
    if event in _REMNAWAVE_NODE_EVENTS:
        node = _object(body.get("data"), f"{event}: data")
        is_online, is_enabled = _REMNAWAVE_NODE_EVENTS[event]
        connected, disabled = node.get("isConnected"), node.get("isDisabled")
        port = node.get("port")
        message = node.get("lastStatusMessage")
        return NodeEvent(
            event,
            external_id=_string(node, "uuid", f"{event}: data"),
            name=_text(node.get("name")) or _string(node, "uuid", f"{event}: data"),
            address=_text(node.get("address")) or "",
            port=port if isinstance(port, int) and not isinstance(port, bool) else None,
            at=_moment(node.get("lastStatusChange"), f"{event}: data.lastStatusChange") or at,
            is_online=is_online if is_online is not None else (connected if isinstance(connected, bool) else None),
            is_enabled=is_enabled if is_enabled is not None else (not disabled if isinstance(disabled, bool) else None),
            message=message if isinstance(message, str) else None,
        )
    return IgnoredEvent(event)


# --- Marzban (a JSON array of notifications per request) --------------------------------------------------------

_MARZBAN_STATUSES = {s: s for s in ("active", "disabled", "limited", "expired", "on_hold")}
_MARZBAN_STATUS_EVENTS = {
    "user_expired": "expired",
    "user_limited": "limited",
    "user_disabled": "disabled",
    "user_enabled": "active",
}
_MARZBAN_SNAPSHOT_EVENTS = {"user_created", "user_updated", "data_usage_reset", "subscription_revoked"}


def parse_marzban(payload: Any) -> list[PanelEvent]:
    """A Marzban webhook body (a JSON array of `{action, username, user, ...}`) as events, in order."""
    if not isinstance(payload, list):
        raise InvalidPanelEvent(f"Marzban sends a JSON array of notifications; got {_kind(payload)}")
    return [_parse_marzban_item(item, f"item {index}") for index, item in enumerate(payload)]


def _parse_marzban_item(item: Any, where: str) -> PanelEvent:
    notification = _object(item, where)
    action = _string(notification, "action", where)
    if action == "user_deleted":
        username = notification.get("username")
        if not isinstance(username, str) or not username:
            raise InvalidPanelEvent(f"{where} ({action}): 'username' must be a non-empty string")
        return UserEvent(action, username, deleted=True)
    if action not in _MARZBAN_STATUS_EVENTS and action not in _MARZBAN_SNAPSHOT_EVENTS:
        return IgnoredEvent(action)
    where = f"{where} ({action})"
    user = _optional_object(notification.get("user"), f"{where}: user")
    if action in _MARZBAN_SNAPSHOT_EVENTS and not user:
        raise InvalidPanelEvent(f"{where}: 'user' must be the user object")
    username = notification.get("username", user.get("username"))
    if not isinstance(username, str) or not username:
        raise InvalidPanelEvent(f"{where}: 'username' must be a non-empty string")
    status = _MARZBAN_STATUS_EVENTS.get(action)
    if action in _MARZBAN_SNAPSHOT_EVENTS:
        status = _status(user.get("status"), _MARZBAN_STATUSES, f"{where}: user.status")
    return UserEvent(
        action,
        username,
        status=status,
        # Every notification carries the whole user, so it also tells us when the user was last online and
        # last fetched the subscription (Marzban has no separate event for either).
        online_at=_moment(user.get("online_at"), f"{where}: user.online_at"),
        sub_updated_at=_moment(user.get("sub_updated_at"), f"{where}: user.sub_updated_at"),
    )


def parse_events(kind: PanelKind, payload: Any) -> list[PanelEvent]:
    """Every event in a webhook body; raises InvalidPanelEvent before anything is applied."""
    if kind == PanelKind.REMNAWAVE:
        return [parse_remnawave(payload)]
    if kind == PanelKind.MARZBAN:
        return parse_marzban(payload)
    raise InvalidPanelEvent(f"{kind} panels send no webhooks")


# --- applying ---------------------------------------------------------------------------------------------------


async def apply_panel_event(session: AsyncSession, server: Server, event: PanelEvent) -> Outcome:
    """Update our records from one event of `server`'s panel, with an audit row for any change."""
    if isinstance(event, UserEvent):
        return await _apply_user_event(session, server, event)
    if isinstance(event, NodeEvent):
        return await _apply_node_event(session, server, event)
    return "ignored"


async def _apply_user_event(session: AsyncSession, server: Server, event: UserEvent) -> Outcome:
    account = await session.scalar(
        select(VpnAccount).where(VpnAccount.server_id == server.id, VpnAccount.panel_username == event.username)
    )
    if account is None:
        # Not one of ours (a panel may also serve accounts made by hand), or already deleted here.
        return "ignored"
    if event.panel_id is not None and account.panel_id not in (None, event.panel_id):
        return "ignored"  # another account under the name (ours was renamed after a clash)
    if event.deleted:
        return await _deleted_on_panel(session, server, account, event)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if event.status is not None and account.status != event.status:
        before["status"], after["status"] = account.status, event.status
        account.status = event.status
    # Moments only move forward, so a late or repeated delivery cannot turn the clock back.
    if _later(event.online_at, account.online_at):
        before["online_at"], after["online_at"] = _iso(account.online_at), _iso(event.online_at)
        account.online_at = event.online_at
    if _later(event.sub_updated_at, account.sub_updated_at):
        before["sub_updated_at"], after["sub_updated_at"] = _iso(account.sub_updated_at), _iso(event.sub_updated_at)
        account.sub_updated_at = event.sub_updated_at
    if not after:
        return "unchanged"
    _audit(session, server, event.type, "vpn_account", account.id, before, after)
    return "changed"


async def _deleted_on_panel(session: AsyncSession, server: Server, account: VpnAccount, event: UserEvent) -> Outcome:
    """Someone deleted our account on the panel by hand. It is not silently re-created by the next sync (that may
    be exactly what staff wanted, e.g. for abuse): it is marked deleted and staff are told; a payment or staff's
    `provisioning.restore_deleted` brings it back."""
    if account.status == DELETED_ON_PANEL:
        return "unchanged"
    before = {"status": account.status, "panel_id": account.panel_id}
    account.status, account.panel_id = DELETED_ON_PANEL, None
    _audit(session, server, event.type, "vpn_account", account.id, before, {"status": DELETED_ON_PANEL})
    await alert_staff(
        session,
        "panel_account_deleted",
        {"server": server.name, "name": account.panel_username, "account": account.id, "user": account.user_id},
        dedupe_key=f"panel_account_deleted:{account.id}:{before['panel_id']}",
    )
    return "changed"


async def _apply_node_event(session: AsyncSession, server: Server, event: NodeEvent) -> Outcome:
    node = await session.scalar(select(Node).where(Node.server_id == server.id, Node.external_id == event.external_id))
    if node is None:
        # The node sync has not seen it yet; the event tells us enough to show it.
        node = Node(
            server_id=server.id,
            external_id=event.external_id,
            name=event.name[:128],
            address=event.address[:255],
            port=event.port,
            is_online=bool(event.is_online),
            is_enabled=event.is_enabled is not False,
            message=event.message,
            status_changed_at=event.at or utcnow(),
        )
        session.add(node)
        await session.flush()
        after = {"is_online": node.is_online, "is_enabled": node.is_enabled}
        _audit(session, server, event.type, "node", node.id, None, after)
        return "changed"
    if event.at is not None and node.status_changed_at is not None and event.at < node.status_changed_at:
        return "unchanged"  # older news than what we have (Remnawave retries; deliveries can cross)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for field, value in (("is_online", event.is_online), ("is_enabled", event.is_enabled)):
        if value is not None and getattr(node, field) != value:
            before[field], after[field] = getattr(node, field), value
            setattr(node, field, value)
    if not after:
        return "unchanged"
    node.status_changed_at = event.at or utcnow()
    if event.message is not None:
        node.message = event.message
    _audit(session, server, event.type, "node", node.id, before, after)
    return "changed"


def _audit(
    session: AsyncSession,
    server: Server,
    event_type: str,
    entity_type: str,
    entity_id: int,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> None:
    record(
        session,
        actor_type="panel",
        actor_id=server.id,
        action=f"panel.{event_type}"[:64],
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=after,
    )


# --- small readers ----------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(type(value), "a scalar")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPanelEvent(f"{where} must be a JSON object; got {_kind(value)}")
    return value


def _optional_object(value: Any, where: str) -> Mapping[str, Any]:
    return {} if value is None else _object(value, where)


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidPanelEvent(f"{where}: '{key}' must be a non-empty string")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _status(value: Any, known: Mapping[str, str], where: str) -> str:
    if value not in known:
        raise InvalidPanelEvent(f"{where} must be one of {', '.join(known)}; got {value!r}")
    return known[value]


def _moment(value: Any, where: str) -> datetime | None:
    """An ISO-8601 time (Remnawave: with Z; Marzban: naive UTC), or None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidPanelEvent(f"{where} must be an ISO-8601 time; got {value!r}")
    try:
        return ensure_utc(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidPanelEvent(f"{where} must be an ISO-8601 time; got {value!r}") from None


def _later(new: datetime | None, current: datetime | None) -> bool:
    return new is not None and (current is None or new > current)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()
