"""The dashboard's daily rollup (app/stats/rollup.py), every 15 minutes: today's 30-day figures are at most that
old, and the first run after midnight finishes yesterday."""

from __future__ import annotations

from app.db import transaction
from app.kit.clock import utcnow
from app.kit.jobs import JobContext, registry
from app.stats.alerts import raise_alerts
from app.stats.rollup import roll_up


@registry.cron(minute={4, 19, 34, 49})
async def roll_up_stats(ctx: JobContext) -> list[str]:
    """Recompute yesterday and today, and any days a stopped worker missed."""
    days = await roll_up(ctx["resources"].sessionmaker, utcnow())
    return [day.isoformat() for day in days]


@registry.cron(minute={2, 12, 22, 32, 42, 52})
async def alert_staff_on_problems(ctx: JobContext) -> list[str]:
    """Tell staff in Telegram about servers down, a spike of failed renewals, a stuck outbox, a failed backup."""
    async with transaction(ctx["resources"].sessionmaker) as session:
        return await raise_alerts(session, utcnow())
