"""What the servers section reads: every server with its health (stored by the health job), load, customers
online now, traffic and nodes. Our database only: pages never wait on a panel (the orphans block is the one
live read, loaded after the page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import utcnow
from app.models import Node, Server, UsageDaily, VpnAccount
from app.panels.servers import get_server
from app.provisioning.drain import drain_progress

# A client seen by the panel this recently counts as online now (the sync runs every five minutes).
ONLINE_WINDOW = timedelta(minutes=10)


@dataclass(slots=True)
class ServerRow:
    server: Server
    accounts: int = 0
    online: int = 0
    traffic_today: int = 0
    traffic_period: int = 0
    nodes_online: int = 0
    nodes: int = 0
    drain: dict[str, Any] | None = None
    node_list: list[Node] = field(default_factory=list)

    @property
    def load_percent(self) -> int:
        return round(100 * self.accounts / self.server.capacity) if self.server.capacity else 0

    @property
    def panel_version(self) -> str | None:
        return (self.server.settings or {}).get("panel_version") or self.server.api_version


async def _by_server(session: AsyncSession, statement: Any) -> dict[int, Any]:
    return {row[0]: row[1:] for row in (await session.execute(statement)).all()}


async def server_rows(session: AsyncSession, server_ids: list[int] | None = None) -> list[ServerRow]:
    query = select(Server).order_by(Server.name)
    if server_ids is not None:
        query = query.where(Server.id.in_(server_ids))
    servers = list((await session.scalars(query)).all())
    if not servers:
        return []
    now = utcnow()
    accounts = await _by_server(
        session,
        select(
            VpnAccount.server_id,
            func.count(),
            func.count(case((VpnAccount.online_at > now - ONLINE_WINDOW, 1))),
            func.coalesce(func.sum(VpnAccount.used_traffic_bytes), 0),
        ).group_by(VpnAccount.server_id),
    )
    today = await _by_server(
        session,
        select(VpnAccount.server_id, func.coalesce(func.sum(UsageDaily.upload_bytes + UsageDaily.download_bytes), 0))
        .join(VpnAccount, VpnAccount.id == UsageDaily.vpn_account_id)
        .where(UsageDaily.day == now.date())
        .group_by(VpnAccount.server_id),
    )
    nodes = await _by_server(
        session,
        select(Node.server_id, func.count(case((Node.is_online, 1))), func.count(), func.sum(Node.users_online))
        .where(Node.is_enabled)
        .group_by(Node.server_id),
    )
    rows = []
    for server in servers:
        count, online, period = accounts.get(server.id, (0, 0, 0))
        nodes_online, nodes_total, users_online = nodes.get(server.id, (0, 0, None))
        rows.append(
            ServerRow(
                server,
                accounts=int(count),
                # The panel's own count of connected users when its nodes report one, else our accounts seen lately.
                online=int(users_online) if users_online is not None else int(online),
                traffic_today=int(today.get(server.id, (0,))[0]),
                traffic_period=int(period),
                nodes_online=int(nodes_online or 0),
                nodes=int(nodes_total),
                drain=await drain_progress(session, server),
            )
        )
    return rows


async def server_detail(session: AsyncSession, server_id: int) -> ServerRow:
    server = await get_server(session, server_id)
    (row,) = await server_rows(session, [server.id])
    row.node_list = list(
        (await session.scalars(select(Node).where(Node.server_id == server.id).order_by(Node.name))).all()
    )
    return row


async def move_targets(session: AsyncSession, server: Server) -> list[Server]:
    """The servers customers of `server` may be moved to."""
    query = select(Server).where(Server.id != server.id, Server.is_enabled, Server.accepts_new_accounts)
    return list((await session.scalars(query.order_by(Server.name))).all())
