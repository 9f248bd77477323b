"""The outbox dispatcher: every few seconds, and right after a commit that queued something."""

from __future__ import annotations

from app.kit.jobs import JobContext, registry
from app.notifications import handlers as notification_handlers  # noqa: F401  (registers their handlers)
from app.outbox.service import dispatch
from app.payments import handlers as payment_handlers  # noqa: F401
from app.provisioning import handlers  # noqa: F401


@registry.cron(second=set(range(0, 60, 5)))
async def dispatch_outbox(ctx: JobContext) -> dict[str, int]:
    """Deliver due outbox messages (panel operations, notifications) with retries."""
    return await dispatch(ctx)
