"""Pull panel state into our database and repair drift (SPEC §6.4). Pages never wait on a panel: they read
what these jobs store.

One pass over a server pages through the panel's accounts and, per page, with one query and bulk writes:
- stores traffic, online and last-fetch times, and adds today's traffic growth to the daily usage table;
- compares each account with what our subscription says it should be and queues a convergence through the
  outbox when expiry, limits or enabled state differ (device limits only on panels that hold them);
- counts panel accounts we do not know (orphans) to report them.
A listed account under one of our names that lacks our ownership mark is someone else's: it is counted as a
clash and left alone. Afterwards our accounts the panel did not list, and that should exist (and were not
deleted on the panel by staff), are queued for creation. An account whose
convergence is still waiting in the outbox (a slow dispatcher, a panel rejecting the update) is not queued again:
passes run every few minutes.

The writes are compiled-once statements run with many parameter sets (one pipelined round trip per page), and
the pass keeps one bit per account it has seen, so time grows linearly with the accounts and memory stays flat
(bench/panel_sync.py measures both).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import insert_for, transaction
from app.kit.clock import utcnow
from app.models import Node, OutboxMessage, OutboxStatus, Server, Subscription, UsageDaily, User, VpnAccount
from app.panels.base import PanelAccount, PanelError, VpnPanel
from app.panels.ownership import is_ours
from app.provisioning.handlers import changes_needed
from app.provisioning.service import DELETED_ON_PANEL, SYNC_TOPIC, desired_spec, request_sync, should_be_enabled

log = logging.getLogger(__name__)

ORPHANS_REPORTED = 100
MISSING_SCAN_CHUNK = 5000

_accounts = VpnAccount.__table__
_usage = UsageDaily.__table__

# Core (not ORM) executemany: compiled once and cached, with no per-row ORM bookkeeping. `updated_at` still
# gets its onupdate default.
_MARK_SYNCED = update(_accounts).where(_accounts.c.id == bindparam("account_id"))


@dataclass
class SyncReport:
    """`drift_fixed` and `missing_created` count the accounts whose convergence is queued, by this pass or by
    an earlier one whose message is still waiting."""

    server: str
    seen: int = 0
    updated: int = 0
    drift_fixed: int = 0
    missing_created: int = 0
    orphans: int = 0
    orphan_names: list[str] = field(default_factory=list)
    clashes: int = 0  # panel accounts under one of our names that are not ours

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class _SeenIds:
    """Ids of our accounts the panel listed, one bit each: highest id / 8 bytes, as ids come from the table's
    sequence. 50,000 accounts take about 6 KB where a set of their usernames takes about 5 MB, so the pass's
    memory does not grow with the number of accounts."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, account_id: int) -> None:
        index = account_id >> 3
        if index >= len(self._bits):
            self._bits.extend(bytes(index + 1 - len(self._bits)))
        self._bits[index] |= 1 << (account_id & 7)

    def __contains__(self, account_id: int) -> bool:
        index = account_id >> 3
        return index < len(self._bits) and bool(self._bits[index] & (1 << (account_id & 7)))


@dataclass
class _Pass:
    """One pass over one server."""

    server: Server
    devices: bool  # the panel holds device limits (`supports_devices`)
    off: frozenset[str]  # the panel's `off_statuses`
    today: date
    report: SyncReport
    seen: _SeenIds = field(default_factory=_SeenIds)


async def _our_accounts(
    session: AsyncSession, server_id: int, usernames: list[str]
) -> dict[str, tuple[VpnAccount, Subscription, int, bool]]:
    rows = await session.execute(
        select(VpnAccount, Subscription, User.telegram_id, User.is_blocked)
        .join(Subscription, Subscription.id == VpnAccount.subscription_id)
        .join(User, User.id == VpnAccount.user_id)
        .where(VpnAccount.server_id == server_id, VpnAccount.panel_username.in_(usernames))
    )
    return {account.panel_username: (account, sub, tg, blocked) for account, sub, tg, blocked in rows.all()}


async def _queue_syncs(session: AsyncSession, accounts: Sequence[VpnAccount]) -> None:
    """Queue a convergence of each account, unless one is already waiting (it reads our state when it runs)."""
    if not accounts:
        return
    queued_id = OutboxMessage.payload["account_id"].as_integer()  # request_sync's payload
    waiting = set(
        (
            await session.scalars(
                select(queued_id).where(
                    OutboxMessage.topic == SYNC_TOPIC,
                    OutboxMessage.status == OutboxStatus.PENDING,
                    queued_id.in_([account.id for account in accounts]),
                )
            )
        ).all()
    )
    for account in accounts:
        if account.id not in waiting:
            await request_sync(session, account)


async def _store_page(session: AsyncSession, run: _Pass, page: list[PanelAccount]) -> None:
    report = run.report
    ours = await _our_accounts(session, run.server.id, [item.username for item in page])
    now = utcnow()
    updates: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []
    drifted: list[VpnAccount] = []
    for item in page:
        known = ours.get(item.username)
        if known is None:
            report.orphans += 1
            if len(report.orphan_names) < ORPHANS_REPORTED:
                report.orphan_names.append(item.username)
            continue
        account, subscription, telegram_id, blocked = known
        if not is_ours(item, account.owner_key, telegram_id):
            # Someone else's account under our name: not our usage, not ours to fix. Ours stays unseen, so its
            # convergence is queued below, and that renames it (provisioning.handlers).
            report.clashes += 1
            continue
        run.seen.add(account.id)
        # Lifetime traffic never shrinks on a healthy panel; if it does (account recreated), add nothing.
        grown = item.lifetime_traffic_bytes - account.lifetime_traffic_bytes
        if grown > 0:
            # Panels report per-user totals, not directions, so the growth is recorded as download traffic.
            usage.append(
                {
                    "vpn_account_id": account.id,
                    "user_id": account.user_id,
                    "day": run.today,
                    "upload_bytes": 0,
                    "download_bytes": grown,
                    "connections": 0,
                }
            )
        updates.append(
            {
                "account_id": account.id,
                "panel_id": item.panel_id,
                "status": item.status,
                "used_traffic_bytes": item.used_traffic_bytes,
                "lifetime_traffic_bytes": item.lifetime_traffic_bytes,
                "online_at": item.online_at or account.online_at,
                "sub_updated_at": item.sub_updated_at or account.sub_updated_at,
                "last_synced_at": now,
            }
        )
        spec = desired_spec(account, subscription, telegram_id, blocked=blocked)
        if changes_needed(item, spec, devices=run.devices, off=run.off) is not None:
            drifted.append(account)
    await _queue_syncs(session, drifted)
    report.drift_fixed += len(drifted)
    if updates:
        await session.execute(_MARK_SYNCED, updates)
        report.updated += len(updates)
    if usage:
        await _add_usage(session, usage)


async def _add_usage(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    statement = insert_for(session, _usage)
    statement = statement.on_conflict_do_update(
        index_elements=["vpn_account_id", "day"],
        set_={"download_bytes": _usage.c.download_bytes + statement.excluded.download_bytes},
    )
    await session.execute(statement, rows)


async def _queue_missing(sessionmaker: async_sessionmaker[AsyncSession], run: _Pass) -> None:
    """Our accounts the panel did not list are (re)created through the outbox, unless their subscription has
    ended: there is nothing to create then, and queueing a no-op on every pass would never stop."""
    last_id = 0
    while True:
        async with transaction(sessionmaker) as session:
            ids = (
                await session.scalars(
                    select(VpnAccount.id)
                    .where(VpnAccount.server_id == run.server.id, VpnAccount.id > last_id)
                    .order_by(VpnAccount.id)
                    .limit(MISSING_SCAN_CHUNK)
                )
            ).all()
            if not ids:
                return
            last_id = ids[-1]
            unlisted = [account_id for account_id in ids if account_id not in run.seen]
            if not unlisted:
                continue
            rows = await session.execute(
                select(VpnAccount, Subscription)
                .join(Subscription, Subscription.id == VpnAccount.subscription_id)
                .where(VpnAccount.id.in_(unlisted))
                .order_by(VpnAccount.id)
            )
            missing = [
                account
                for account, subscription in rows.all()
                if should_be_enabled(subscription) and account.status != DELETED_ON_PANEL
            ]
            await _queue_syncs(session, missing)
            run.report.missing_created += len(missing)


async def sync_server_accounts(
    sessionmaker: async_sessionmaker[AsyncSession], server: Server, panel: VpnPanel, *, page_size: int = 1000
) -> SyncReport:
    """One full pass over a server's accounts: store usage, repair drift, report orphans."""
    run = _Pass(
        server,
        devices=panel.supports_devices,
        off=panel.off_statuses,
        today=utcnow().date(),
        report=SyncReport(server=server.name),
    )
    async for page in panel.iter_accounts(page_size):
        run.report.seen += len(page)
        async with transaction(sessionmaker) as session:
            await _store_page(session, run, page)
    await _queue_missing(sessionmaker, run)
    if run.report.orphans:
        log.warning("server %s has %d panel accounts we do not know", server.name, run.report.orphans)
    return run.report


LAST_SYNC_KEY = "last_sync"


async def remember_sync(sessionmaker: async_sessionmaker[AsyncSession], server_id: int, report: SyncReport) -> None:
    """Keep the pass's counts (drift repaired, missing accounts recreated, orphans, name clashes) on the server,
    for the admin's servers page; under the row lock, as the outage review writes the same JSON column."""
    async with transaction(sessionmaker) as session:
        server = await session.get(Server, server_id, with_for_update=True)
        if server is None:
            return
        counts = {key: value for key, value in report.as_dict().items() if key not in ("server", "orphan_names")}
        server.settings = {**(server.settings or {}), LAST_SYNC_KEY: {"at": utcnow().isoformat(), **counts}}


async def check_server_health(sessionmaker: async_sessionmaker[AsyncSession], server: Server, panel: VpnPanel) -> bool:
    """Store the panel's reachability and its nodes' state; returns whether the panel answered. A node the panel
    no longer lists is kept (its history stays) but shown offline."""
    now = utcnow()
    try:
        nodes = await panel.nodes()
    except PanelError as exc:
        async with transaction(sessionmaker) as session:
            await session.execute(
                update(Server)
                .where(Server.id == server.id)
                .values(health="down", health_checked_at=now, last_error=f"{type(exc).__name__}: {exc}"[:2000])
            )
        return False
    async with transaction(sessionmaker) as session:
        await session.execute(
            update(Server).where(Server.id == server.id).values(health="ok", health_checked_at=now, last_error=None)
        )
        existing = {
            node.external_id: node
            for node in (await session.scalars(select(Node).where(Node.server_id == server.id))).all()
        }
        for info in nodes:
            node = existing.pop(info.external_id, None)
            if node is None:
                node = Node(server_id=server.id, external_id=info.external_id, status_changed_at=now)
                session.add(node)
            elif node.is_online != info.is_online:
                node.status_changed_at = now
            node.name, node.address, node.port = info.name, info.address, info.port
            node.is_online, node.is_enabled, node.message = info.is_online, info.is_enabled, info.message
            node.users_online = info.users_online
        for node in existing.values():  # removed from the panel
            if node.is_online:
                node.is_online, node.status_changed_at = False, now
            node.users_online, node.message = None, "no longer listed by the panel"
    return True
