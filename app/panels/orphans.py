"""Staff's actions on orphans (panel accounts no record of ours owns, app.panels.ownership.find_orphans): delete
one on the panel — only if it is ours (our prefix and our ownership mark), checked again by the outbox handler
right before the delete — or ignore it (hidden from the list from then on). Foreign accounts are never deleted."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.db import transaction
from app.kit.errors import ServiceUnavailable
from app.kit.field_errors import FieldInvalid
from app.models import Server, VpnAccount
from app.outbox import service as outbox
from app.outbox.service import handler
from app.panels.base import AccountNotFound, AccountRef, PanelAccount, PanelError
from app.panels.ownership import MARK, Orphans, find_orphans, installation_prefix

DELETE_ORPHAN_TOPIC = "panel.delete_orphan"
IGNORED_KEY = "ignored_orphans"
MAX_IGNORED = 1000
_USERNAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def ignored(server: Server) -> list[str]:
    return list((server.settings or {}).get(IGNORED_KEY) or [])


async def list_orphans(resources: Any, server: Server) -> Orphans:
    """The server's orphans as the panel lists them now, without the ones staff ignored."""
    try:
        found = await find_orphans(resources.sessionmaker, server, resources.panels.for_server(server))
    except PanelError as exc:
        raise ServiceUnavailable(f"The panel cannot be read now: {exc}") from None
    hidden = set(ignored(server))
    found.ours = [name for name in found.ours if name not in hidden]
    found.foreign = [name for name in found.foreign if name not in hidden]
    return found


def _username(value: object) -> str:
    name = str(value or "").strip()
    if not _USERNAME.match(name):
        raise FieldInvalid("username", "Give the panel username (1–64 letters, digits, _ or -).")
    return name


async def _record_of(session: AsyncSession, server_id: int, username: str) -> int | None:
    return await session.scalar(
        select(VpnAccount.id).where(VpnAccount.server_id == server_id, VpnAccount.panel_username == username)
    )


async def delete_orphan(session: AsyncSession, actor: Actor, server: Server, username: object) -> None:
    """Queue the delete of one of our orphans on the panel (the handler checks the mark again first)."""
    name = _username(username)
    prefix = await installation_prefix(session)
    if not name.startswith(prefix):
        raise FieldInvalid("username", f"{name} is not one of ours (our names start with {prefix}): never deleted.")
    account_id = await _record_of(session, server.id, name)
    if account_id is not None:
        raise FieldInvalid("username", f"{name} is our account #{account_id}, not an orphan.")
    await outbox.add(
        session,
        DELETE_ORPHAN_TOPIC,
        {"server_id": server.id, "username": name},
        ordering_key=f"server:{server.id}:{name}",
    )
    record_by(
        session,
        actor,
        action="server.orphan_delete",
        entity_type="server",
        entity_id=server.id,
        before={"panel_username": name},
        after=None,
    )


async def ignore_orphan(session: AsyncSession, actor: Actor, server: Server, username: object) -> None:
    name = _username(username)
    hidden = ignored(server)
    if name in hidden:
        return
    if len(hidden) >= MAX_IGNORED:
        raise FieldInvalid("username", f"At most {MAX_IGNORED} ignored accounts per server.")
    server.settings = {**(server.settings or {}), IGNORED_KEY: [*hidden, name]}
    record_by(
        session,
        actor,
        action="server.orphan_ignore",
        entity_type="server",
        entity_id=server.id,
        before={IGNORED_KEY: hidden},
        after={IGNORED_KEY: [*hidden, name]},
    )


def is_our_orphan(found: PanelAccount, prefix: str) -> bool:
    return found.username.startswith(prefix) and MARK in (found.note or "")


@handler(DELETE_ORPHAN_TOPIC)
async def delete_orphan_on_panel(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """Delete the orphan if it is still ours and still an orphan; anything else is left alone."""
    sessionmaker = ctx["resources"].sessionmaker
    async with transaction(sessionmaker) as session:
        server = await session.get(Server, payload["server_id"])
        prefix = await installation_prefix(session)
        record = await _record_of(session, payload["server_id"], payload["username"])
    if server is None or record is not None:
        return  # the server is gone, or the account is ours again (restored, moved back)
    panel = ctx["resources"].panels.for_server(server)
    try:
        found = await panel.get_account(AccountRef(payload["username"]))
    except AccountNotFound:
        return
    if not is_our_orphan(found, prefix):
        return
    await panel.delete_account(found.ref)
