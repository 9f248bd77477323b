"""The dashboard's two lists: every panel server with its state and load, and the latest payments."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Node, Payment, Server, User, VpnAccount

LATEST_PAYMENTS = 10


@dataclass(frozen=True, slots=True)
class ServerStatus:
    server: Server
    accounts: int
    nodes_online: int
    nodes: int

    @property
    def load_percent(self) -> int:
        return round(100 * self.accounts / self.server.capacity) if self.server.capacity else 0


async def server_statuses(session: AsyncSession) -> list[ServerStatus]:
    servers = list(await session.scalars(select(Server).order_by(Server.is_enabled.desc(), Server.name)))
    if not servers:
        return []
    counted = await session.execute(select(VpnAccount.server_id, func.count()).group_by(VpnAccount.server_id))
    accounts: dict[int, int] = {server_id: count for server_id, count in counted}
    nodes = {
        server_id: (online or 0, total)
        for server_id, online, total in await session.execute(
            select(Node.server_id, func.count(case((Node.is_online, 1))), func.count())
            .where(Node.is_enabled)
            .group_by(Node.server_id)
        )
    }
    return [ServerStatus(server, accounts.get(server.id, 0), *nodes.get(server.id, (0, 0))) for server in servers]


async def latest_payments(session: AsyncSession, limit: int = LATEST_PAYMENTS) -> list[tuple[Payment, User]]:
    rows = await session.execute(
        select(Payment, User)
        .join(User, User.id == Payment.user_id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    return [(payment, user) for payment, user in rows]
