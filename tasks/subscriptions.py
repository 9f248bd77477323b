"""Subscription jobs: expiry reminders every ten minutes, and the end of subscriptions (renewal charges,
retries, expiry) every five."""

from __future__ import annotations

from app.kit.jobs import JobContext, registry
from app.subscriptions.expiry import expire_due
from app.subscriptions.reminders import send_reminders


@registry.cron(minute=set(range(3, 60, 10)))
async def send_expiry_reminders(ctx: JobContext) -> dict[str, int]:
    """Queue the 3-, 2- and 1-day reminders (and "trial ending") due now, each once per end date."""
    queued = await send_reminders(ctx["resources"])
    return {f"days_{stage}": count for stage, count in queued.items()}


@registry.cron(minute=set(range(4, 60, 5)))
async def expire_subscriptions(ctx: JobContext) -> dict[str, int]:
    """End, renew or grant a retry to every live subscription past its end date."""
    return await expire_due(ctx["resources"])
