"""The outbox dispatchers, one per lane: every few seconds, and right after a commit that queued something."""

from __future__ import annotations

from app.admin import exports  # noqa: F401  (an Excel file sent to a staff member's Telegram)
from app.kit.jobs import JobContext, registry
from app.notifications import handlers as notification_handlers  # noqa: F401  (registers their handlers)
from app.outbox.service import dispatch
from app.panels import orphans  # noqa: F401
from app.payments import handlers as payment_handlers  # noqa: F401
from app.provisioning import drain, handlers  # noqa: F401


@registry.cron(second=set(range(0, 60, 5)))
async def dispatch_outbox(ctx: JobContext) -> dict[str, int]:
    """Carry out due side effects (panel operations, provider calls) with retries."""
    return await dispatch(ctx, lane="effects")


@registry.cron(second=set(range(2, 60, 5)))
async def dispatch_messages(ctx: JobContext) -> dict[str, int]:
    """Send due notifications with retries, several at once (each waits its turn under Telegram's limits);
    one at a time on SQLite, which has a single writer."""
    concurrency = 1 if ctx["resources"].settings.is_sqlite else 8
    return await dispatch(ctx, lane="messages", concurrency=concurrency)
