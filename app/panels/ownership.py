"""Which panel accounts are ours (issue 11, SPEC §6.4). A name alone proves nothing: two shops or a staging copy
may share a panel, and a restored backup reuses subscription ids, so a same-name account can be someone else's.

* Names carry a per-installation prefix, generated once and stored (system setting `panels.username_prefix`;
  `PANEL_USERNAME_PREFIX` sets it), so two installations never pick the same names.
* Every account we create carries an ownership mark, `vpnshop-owner:<owner_key>`, in its Marzban `note` or
  Remnawave `description`; `owner_key` is random per account, so even our own reused id does not match.
* Before any change we check the mark. A same-name account without it is left alone: ours gets a new name and
  staff are told (`record_clash`). Accounts made before marks existed (`owner_key` "legacy-…") are recognised once
  by the customer's Telegram id, and the mark is written then.

Staff read clashes (`recent_clashes`) and orphans (`find_orphans`) through these functions.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.service import record
from app.db import insert_for, transaction
from app.kit.errors import AppError
from app.models import AuditLog, Server, SystemSetting, VpnAccount
from app.notifications.service import alert_staff
from app.panels.base import PanelAccount, VpnPanel, telegram_id_in

MARK = "vpnshop-owner:"
LEGACY = "legacy-"
PREFIX_SETTING = "panels.username_prefix"
# Marzban wants 3–32 word characters from the start (its regex' look-ahead), Remnawave 3–36 of [A-Za-z0-9_-]:
# a prefix of lowercase letters, digits and underscores, short enough for six digits and a clash suffix.
PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
CLASH_ACTION = "panel.name_clash"


class InvalidPrefix(AppError):
    status_code = 400
    code = "invalid_prefix"


def owner_mark(owner_key: str) -> str:
    return f"{MARK}{owner_key}"


def with_mark(note: str, owner_key: str) -> str:
    """Our note with the mark at its front, so a panel's length limit can only cut the human part."""
    return f"{owner_mark(owner_key)} {note}".strip()


def is_ours(found: PanelAccount, owner_key: str, telegram_id: int | None) -> bool:
    """Whether the panel account `found` is the one our account with `owner_key` made."""
    note = found.note or ""
    if owner_mark(owner_key) in note:
        return True
    if not owner_key.startswith(LEGACY) or MARK in note or telegram_id is None:
        return False
    # Made before marks existed: our notes then said "tg:<id>", and Remnawave also kept the Telegram id.
    return telegram_id in (found.telegram_id, telegram_id_in(note))


def clash_name(base: str) -> str:
    """Another name for an account whose name a foreign account holds: the base and a random suffix."""
    return f"{base}_{''.join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))}"


# --- the installation prefix -------------------------------------------------------------------------------------


def new_prefix() -> str:
    return "vs" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4)) + "_"


def check_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix):
        raise InvalidPrefix(
            f"Panel username prefix {prefix!r}: expected 1–16 lowercase letters, digits or underscores, "
            "starting with a letter"
        )
    return prefix


async def installation_prefix(session: AsyncSession) -> str:
    """The prefix of every new panel username: the stored one, generated and stored on first use."""
    stored = await session.get(SystemSetting, PREFIX_SETTING)
    if stored is not None:
        return str(stored.value["v"])
    statement = insert_for(session, SystemSetting.__table__).values(
        key=PREFIX_SETTING, value={"v": new_prefix()}, value_type="str"
    )
    # Two first accounts at once: one insert wins, both read the winner.
    await session.execute(statement.on_conflict_do_nothing(index_elements=["key"]))
    value = await session.scalar(select(SystemSetting.value).where(SystemSetting.key == PREFIX_SETTING))
    assert value is not None
    return str(value["v"])


async def set_prefix(session: AsyncSession, prefix: str) -> None:
    """Use `prefix` for accounts made from now on (existing accounts keep their names)."""
    check_prefix(prefix)
    statement = insert_for(session, SystemSetting.__table__).values(
        key=PREFIX_SETTING, value={"v": prefix}, value_type="str"
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=["key"], set_={"value": statement.excluded.value})
    )


# --- clashes and orphans, for staff ------------------------------------------------------------------------------


async def record_clash(session: AsyncSession, server: Server, account: VpnAccount, old_name: str) -> None:
    """Audit the rename and tell staff: someone else's account holds the name ours was to have."""
    record(
        session,
        actor_type="system",
        actor_id=None,
        action=CLASH_ACTION,
        entity_type="vpn_account",
        entity_id=account.id,
        before={"panel_username": old_name},
        after={"panel_username": account.panel_username, "server": server.name},
    )
    await alert_staff(
        session,
        "panel_name_clash",
        {"server": server.name, "name": old_name, "new_name": account.panel_username, "account": account.id},
        dedupe_key=f"panel_name_clash:{server.id}:{old_name}:{account.id}",
    )


@dataclass(frozen=True, slots=True)
class Clash:
    account_id: int
    server: str
    foreign_name: str
    new_name: str


async def recent_clashes(session: AsyncSession, limit: int = 100) -> list[Clash]:
    """The latest name clashes, newest first (each left a foreign account alone and renamed ours)."""
    rows = await session.scalars(
        select(AuditLog).where(AuditLog.action == CLASH_ACTION).order_by(AuditLog.id.desc()).limit(limit)
    )
    return [
        Clash(
            account_id=int(row.entity_id or 0),
            server=str((row.after or {}).get("server", "")),
            foreign_name=str((row.before or {}).get("panel_username", "")),
            new_name=str((row.after or {}).get("panel_username", "")),
        )
        for row in rows
    ]


@dataclass
class Orphans:
    """Panel accounts no record of ours owns. `ours`: they bear an ownership mark under our prefix (left by a
    restored backup or a lost record); `foreign`: anything else (made by hand, another shop, a same-name account
    ours was renamed away from). Neither is ever changed by us."""

    server: str
    ours: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.server, "ours": self.ours, "foreign": self.foreign}


async def find_orphans(
    sessionmaker: async_sessionmaker[AsyncSession], server: Server, panel: VpnPanel, *, page_size: int = 1000
) -> Orphans:
    """Walk the panel and list the accounts no record of ours owns (a live read, for the staff's page)."""
    orphans = Orphans(server.name)
    async with transaction(sessionmaker) as session:
        prefix = await installation_prefix(session)
    async for page in panel.iter_accounts(page_size):
        async with sessionmaker() as session:
            rows = await session.execute(
                select(VpnAccount.panel_username, VpnAccount.owner_key).where(
                    VpnAccount.server_id == server.id,
                    VpnAccount.panel_username.in_([item.username for item in page]),
                )
            )
            keys = {name: key for name, key in rows.all()}
        for item in page:
            key = keys.get(item.username)
            if key is not None and (owner_mark(key) in (item.note or "") or key.startswith(LEGACY)):
                continue
            marked = item.username.startswith(prefix) and MARK in (item.note or "")
            bucket = orphans.ours if marked else orphans.foreign
            bucket.append(item.username)
    return orphans
