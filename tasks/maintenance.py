"""Housekeeping jobs: drop expired sign-in codes and sessions (SPEC §12 "cleanup of stale sessions"), old
job-run records (the outbox cron alone records a run every five seconds) and old webhook receipts (one row per
delivery from every provider and panel, retried ones included)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, delete, or_

from app.db import transaction
from app.kit.clock import utcnow
from app.kit.jobs import JobContext, registry
from app.models import BrowserSession, JobRun, LoginCode, WebhookReceipt

# Keep used or expired rows a day for support questions ("my link did not work").
KEEP_FOR = timedelta(days=1)
# Successful runs matter for "when did it last run"; failures are kept longer for investigation.
KEEP_OK_RUNS = timedelta(days=3)
KEEP_FAILED_RUNS = timedelta(days=30)


@registry.cron(minute=17)
async def cleanup_stale_auth(ctx: JobContext) -> dict[str, int]:
    """Delete login codes and browser sessions that expired or were revoked more than a day ago."""
    cutoff = utcnow() - KEEP_FOR
    async with transaction(ctx["resources"].sessionmaker) as session:
        codes = await session.execute(
            delete(LoginCode).where(or_(LoginCode.expires_at < cutoff, LoginCode.used_at < cutoff))
        )
        sessions = await session.execute(
            delete(BrowserSession).where(or_(BrowserSession.expires_at < cutoff, BrowserSession.revoked_at < cutoff))
        )
    return {"login_codes": codes.rowcount, "sessions": sessions.rowcount}


@registry.cron(hour=3, minute=25)
async def prune_old_records(ctx: JobContext) -> dict[str, int]:
    """Delete successful job runs older than three days and failed ones older than thirty, and webhook receipts
    older than `webhook_receipt_retention_days`."""
    now = utcnow()
    receipts_cutoff = now - timedelta(days=ctx["resources"].settings.webhook_receipt_retention_days)
    async with transaction(ctx["resources"].sessionmaker) as session:
        runs = await session.execute(
            delete(JobRun).where(
                or_(
                    and_(JobRun.outcome == "ok", JobRun.started_at < now - KEEP_OK_RUNS),
                    and_(JobRun.outcome == "failed", JobRun.started_at < now - KEEP_FAILED_RUNS),
                )
            )
        )
        receipts = await session.execute(delete(WebhookReceipt).where(WebhookReceipt.received_at < receipts_cutoff))
    return {"job_runs": runs.rowcount, "webhook_receipts": receipts.rowcount}
