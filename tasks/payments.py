"""Payment jobs: reconciliation of checkouts whose webhook did not come, and expiry of unpaid ones."""

from __future__ import annotations

from app.kit.jobs import JobContext, registry
from app.payments.operations import reconcile_pending


@registry.cron(minute=set(range(1, 60, 5)))
async def reconcile_payments(ctx: JobContext) -> dict[str, int]:
    """Re-fetch pending payments older than five minutes from their provider; cancel expired checkouts."""
    return await reconcile_pending(ctx["resources"])
