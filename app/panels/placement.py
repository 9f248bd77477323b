"""Where a new VPN account goes: the least-loaded enabled server (relative to capacity and weight), or the
least-loaded one in the location the user chose."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.errors import AppError
from app.models import Server, VpnAccount


class NoServerAvailable(AppError):
    """No enabled server has room for a new account right now."""

    status_code = 503
    code = "no_server_available"


async def server_loads(session: AsyncSession, location: str | None = None) -> list[tuple[Server, int]]:
    """Servers open to new accounts (in use and accepting them) with their account counts, optionally in one
    location."""
    counts = select(VpnAccount.server_id, func.count().label("accounts")).group_by(VpnAccount.server_id).subquery()
    query = (
        select(Server, func.coalesce(counts.c.accounts, 0))
        .outerjoin(counts, counts.c.server_id == Server.id)
        .where(Server.is_enabled, Server.accepts_new_accounts)
        .order_by(Server.id)
    )
    if location:
        query = query.where(Server.location == location)
    return [(server, accounts) for server, accounts in (await session.execute(query)).all()]


async def choose_server(session: AsyncSession, location: str | None = None) -> Server:
    """The server with the lowest accounts / (capacity × weight) that still has room."""
    candidates = [(s, n) for s, n in await server_loads(session, location) if n < s.capacity]
    if not candidates:
        where = f" in {location}" if location else ""
        raise NoServerAvailable(f"No server{where} has room for a new account")
    server, _ = min(candidates, key=lambda pair: (pair[1] / (pair[0].capacity * pair[0].weight), pair[0].id))
    return server
