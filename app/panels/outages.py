"""VPN-problem notices (SPEC §9): when a server stays down for OUTAGE_GRACE, every user with a live subscription
on it hears so once; when it comes back, exactly those users hear it is restored.

A server is down when its panel does not answer, or when the panel lists enabled nodes and none of them is
online (accounts are not tied to one node, so a single node down is not an outage: clients fall back to the
others). The grace keeps a blip from messaging thousands of people.

The state of an open outage lives in `Server.settings["outage"]` (the one free-form column a server has):
`since` (the first check that found it down, the outage's identity in every dedupe key), `notified`, and
`after_id` (the outbox id before the notices, so the recovery reads back only the outbox rows written since).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.kit.clock import ensure_utc, parse_utc, utcnow
from app.models import LIVE_STATUSES, Node, OutboxMessage, Server, Subscription, VpnAccount
from app.notifications.service import USER_TOPIC, UserNotice, notify_users

OUTAGE_GRACE = timedelta(minutes=3)
STATE_KEY = "outage"
PROBLEM_KIND = "vpn_problem"
RESTORED_KIND = "vpn_restored"
BATCH = 1000


def is_down(server: Server, nodes: Sequence[Node]) -> bool:
    """Whether users of the server cannot connect, as far as the last health check knows."""
    if server.health == "down":
        return True
    enabled = [node for node in nodes if node.is_enabled]
    return server.health == "ok" and bool(enabled) and not any(node.is_online for node in enabled)


def problem_key(server_id: int, since_iso: str, user_id: int) -> str:
    return f"{PROBLEM_KIND}:{server_id}:{since_iso}:{user_id}"


def restored_key(server_id: int, since_iso: str, user_id: int) -> str:
    return f"{RESTORED_KIND}:{server_id}:{since_iso}:{user_id}"


async def review_outage(sessionmaker: async_sessionmaker[AsyncSession], server_id: int) -> str | None:
    """After a health check: open, announce or close the server's outage. Returns what happened ("down",
    "notified", "restored", "recovered" for a blip) or None when nothing changed. Safe to run repeatedly."""
    async with transaction(sessionmaker) as session:
        server = await session.get(Server, server_id, with_for_update=True)
        if server is None:
            return None
        nodes = (await session.scalars(select(Node).where(Node.server_id == server_id))).all()
        state: dict[str, Any] | None = (server.settings or {}).get(STATE_KEY)
        now = utcnow()
        if is_down(server, nodes):
            if state is None:
                since = ensure_utc(server.health_checked_at or now)
                _save(server, {"since": since.isoformat(), "notified": False})
                return "down"
            since = parse_utc(state.get("since")) or now
            if state.get("notified") or now - since < OUTAGE_GRACE:
                return None
            after_id = await session.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0)))
            await _announce_problem(session, server, state["since"], now)
            _save(server, {**state, "notified": True, "after_id": after_id})
            return "notified"
        if state is None:
            return None
        if state.get("notified"):
            await _announce_restored(session, server, state, now)
        _save(server, None)
        return "restored" if state.get("notified") else "recovered"


def _save(server: Server, state: dict[str, Any] | None) -> None:
    # A new dict, so the ORM sees the JSON column change.
    settings = {key: value for key, value in (server.settings or {}).items() if key != STATE_KEY}
    if state is not None:
        settings[STATE_KEY] = state
    server.settings = settings


def _label(server: Server) -> str:
    return server.location or server.name


async def _announce_problem(session: AsyncSession, server: Server, since_iso: str, now: datetime) -> None:
    """Queue the problem notice for every user with a live subscription whose account is on the server."""
    data = {"server": _label(server), "since": since_iso}
    last_user = 0
    while True:
        user_ids = (
            await session.scalars(
                select(VpnAccount.user_id)
                .join(Subscription, Subscription.id == VpnAccount.subscription_id)
                .where(
                    VpnAccount.server_id == server.id,
                    VpnAccount.user_id > last_user,
                    Subscription.status.in_(LIVE_STATUSES),
                    Subscription.ends_at > now,
                )
                .distinct()
                .order_by(VpnAccount.user_id)
                .limit(BATCH)
            )
        ).all()
        if not user_ids:
            return
        notices = [UserNotice(user, PROBLEM_KIND, data, problem_key(server.id, since_iso, user)) for user in user_ids]
        await notify_users(session, notices)
        last_user = user_ids[-1]


async def _announce_restored(session: AsyncSession, server: Server, state: dict[str, Any], now: datetime) -> None:
    """Queue the restored notice for exactly the users whose problem notice was queued for this outage."""
    since_iso = state["since"]
    data = {"server": _label(server), "since": since_iso, "restored_at": now.isoformat()}
    prefix = f"{USER_TOPIC}:{PROBLEM_KIND}:{server.id}:{since_iso}:"  # problem_key without the user
    last_id = int(state.get("after_id") or 0)
    while True:
        rows = (
            await session.execute(
                select(OutboxMessage.id, OutboxMessage.dedupe_key)
                .where(
                    OutboxMessage.id > last_id,
                    OutboxMessage.topic == USER_TOPIC,
                    OutboxMessage.dedupe_key.startswith(prefix, autoescape=True),
                )
                .order_by(OutboxMessage.id)
                .limit(BATCH)
            )
        ).all()
        if not rows:
            return
        user_ids = [int(key.rsplit(":", 1)[1]) for _, key in rows]
        await notify_users(
            session,
            [
                UserNotice(user_id, RESTORED_KIND, data, restored_key(server.id, since_iso, user_id))
                for user_id in user_ids
            ],
        )
        last_id = rows[-1][0]
