"""Panel jobs: node health every minute, account sync and reconciliation every five minutes, and deletion of
accounts past the grace period once a day."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.db import transaction
from app.kit.clock import utcnow
from app.kit.jobs import JobContext, registry
from app.models import Server, Subscription, VpnAccount
from app.panels.base import PanelError
from app.panels.outages import review_outage
from app.panels.sync import check_server_health, remember_sync, sync_server_accounts
from app.provisioning.service import delete_account

log = logging.getLogger(__name__)


async def _enabled_servers(ctx: JobContext) -> list[Server]:
    async with transaction(ctx["resources"].sessionmaker) as session:
        return list((await session.scalars(select(Server).where(Server.is_enabled).order_by(Server.id))).all())


@registry.cron(second=30)
async def check_panels(ctx: JobContext) -> dict[str, bool]:
    """Reachability of every enabled panel and the state of its nodes; users hear of an outage that lasts."""
    resources = ctx["resources"]
    reachable: dict[str, bool] = {}
    for server in await _enabled_servers(ctx):
        panel = resources.panels.for_server(server)
        reachable[server.name] = await check_server_health(resources.sessionmaker, server, panel)
        change = await review_outage(resources.sessionmaker, server.id)
        if change is not None:
            log.warning("server %s: outage %s", server.name, change)
    return reachable


@registry.cron(minute=set(range(2, 60, 5)))
async def sync_panels(ctx: JobContext) -> dict[str, Any]:
    """Usage, online state and drift repair for every enabled panel; one panel down does not stop the rest."""
    resources = ctx["resources"]
    reports: dict[str, Any] = {}
    for server in await _enabled_servers(ctx):
        try:
            report = await sync_server_accounts(resources.sessionmaker, server, resources.panels.for_server(server))
        except PanelError as exc:
            log.warning("sync of %s skipped: %s", server.name, exc)
            reports[server.name] = {"error": str(exc)}
        else:
            reports[server.name] = report.as_dict()
            await remember_sync(resources.sessionmaker, server.id, report)
    return reports


@registry.cron(hour=4, minute=40)
async def delete_lapsed_accounts(ctx: JobContext) -> int:
    """Accounts whose subscription ended more than EXPIRY_GRACE_DAYS ago are deleted from their panel."""
    resources = ctx["resources"]
    cutoff = utcnow() - timedelta(days=resources.settings.expiry_grace_days)
    deleted = 0
    while True:
        async with transaction(resources.sessionmaker) as session:
            accounts = (
                await session.scalars(
                    select(VpnAccount)
                    .join(Subscription, Subscription.id == VpnAccount.subscription_id)
                    .where(Subscription.ends_at < cutoff)
                    .order_by(VpnAccount.id)
                    .limit(500)
                )
            ).all()
            for account in accounts:
                await delete_account(session, account)
        deleted += len(accounts)
        if len(accounts) < 500:
            return deleted
