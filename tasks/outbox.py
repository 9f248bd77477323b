"""The outbox dispatcher: every few seconds, and right after a commit that queued something."""

from __future__ import annotations

from app.kit.jobs import JobContext, registry
from app.outbox.service import dispatch
from app.provisioning import handlers  # noqa: F401  (registers the panel handlers)


@registry.cron(second=set(range(0, 60, 5)))
async def dispatch_outbox(ctx: JobContext) -> dict[str, int]:
    """Deliver due outbox messages (panel operations, notifications) with retries."""
    return await dispatch(ctx)
