"""The backup job: every night it makes a backup when the newest is BACKUP_INTERVAL_DAYS old (weekly by default)
and deletes those past BACKUP_RETENTION_DAYS."""

from __future__ import annotations

import asyncio
from typing import Any

from app.backups.service import backup_due, make_backup, prune_backups
from app.kit.clock import utcnow
from app.kit.jobs import JobContext, registry


@registry.cron(hour=2, minute=50)
async def backup_database(ctx: JobContext) -> dict[str, Any]:
    """Back up the database when one is due, then prune old backups."""
    settings = ctx["resources"].settings
    if not settings.backup_enabled:
        return {"enabled": False}
    now = utcnow()
    made = None
    if await asyncio.to_thread(backup_due, settings, now):
        made = await make_backup(settings, now)
    pruned = await asyncio.to_thread(prune_backups, settings, now)
    return {
        "made": str(made.path) if made else None,
        "size": made.size if made else None,
        "deleted": len(pruned.deleted),
    }


@registry.job
async def backup_now(ctx: JobContext) -> dict[str, Any]:
    """A backup asked for in the admin (/admin/system): made at once, whatever the schedule says."""
    made = await make_backup(ctx["resources"].settings, utcnow())
    return {"made": str(made.path), "size": made.size}
