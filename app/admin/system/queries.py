"""What /admin/system reads: each job's last run and recent failures (JobRun), the outbox by topic and state
with the messages that fail or gave up, the payment events received, and the backups on disk."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.backups.files import Backup, complete_backups
from app.models import JobRun, OutboxMessage, OutboxStatus, PaymentEvent, WebhookReceipt

FAILURE_WINDOW = timedelta(hours=24)
LISTED = 50


@dataclass(frozen=True, slots=True)
class JobSummary:
    name: str
    last: JobRun
    failures: int  # in FAILURE_WINDOW
    last_error: str | None

    @property
    def duration(self) -> float | None:
        if self.last.finished_at is None:
            return None
        return (self.last.finished_at - self.last.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class TopicCount:
    topic: str
    pending: int
    failing: int  # pending with an error: being retried
    dead: int


async def jobs(session: AsyncSession, now: datetime) -> list[JobSummary]:
    latest = select(JobRun.job_name, func.max(JobRun.id).label("id")).group_by(JobRun.job_name).subquery()
    last_runs = (await session.scalars(select(JobRun).join(latest, JobRun.id == latest.c.id))).all()
    failed = dict(
        (
            await session.execute(
                select(JobRun.job_name, func.count())
                .where(JobRun.outcome == "failed", JobRun.started_at >= now - FAILURE_WINDOW)
                .group_by(JobRun.job_name)
            )
        ).all()
    )
    errors: dict[str, str | None] = {}
    for run in (
        await session.scalars(select(JobRun).where(JobRun.outcome == "failed").order_by(JobRun.id.desc()).limit(LISTED))
    ).all():
        errors.setdefault(run.job_name, run.error)
    return sorted(
        (JobSummary(run.job_name, run, failed.get(run.job_name, 0), errors.get(run.job_name)) for run in last_runs),
        key=lambda job: (-job.failures, job.name),
    )


async def outbox_counts(session: AsyncSession) -> list[TopicCount]:
    rows = (
        await session.execute(
            select(
                OutboxMessage.topic,
                OutboxMessage.status,
                OutboxMessage.last_error.is_not(None),
                func.count(),
            )
            .where(OutboxMessage.status != OutboxStatus.DONE)
            .group_by(OutboxMessage.topic, OutboxMessage.status, OutboxMessage.last_error.is_not(None))
        )
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for topic, status, has_error, count in rows:
        found = counts.setdefault(topic, {"pending": 0, "failing": 0, "dead": 0})
        if status == OutboxStatus.DEAD:
            found["dead"] += count
        else:
            found["pending"] += count
            if has_error:
                found["failing"] += count
    return [TopicCount(topic, **found) for topic, found in sorted(counts.items())]


async def troubled(session: AsyncSession) -> list[OutboxMessage]:
    """Dead messages and pending ones that failed at least once, newest first."""
    query = (
        select(OutboxMessage)
        .where(
            (OutboxMessage.status == OutboxStatus.DEAD)
            | ((OutboxMessage.status == OutboxStatus.PENDING) & OutboxMessage.last_error.is_not(None))
        )
        .order_by(OutboxMessage.id.desc())
        .limit(LISTED)
    )
    return list((await session.scalars(query)).all())


async def payment_events(session: AsyncSession) -> list[PaymentEvent]:
    query = select(PaymentEvent).order_by(PaymentEvent.received_at.desc(), PaymentEvent.id.desc()).limit(LISTED)
    return list((await session.scalars(query)).all())


async def webhook_receipts(session: AsyncSession) -> list[WebhookReceipt]:
    query = select(WebhookReceipt).order_by(WebhookReceipt.id.desc()).limit(LISTED)
    return list((await session.scalars(query)).all())


async def backups(directory: str) -> list[Backup]:
    """Complete backups, newest first (a directory not made yet holds none)."""
    # complete_backups finds none in a directory not made yet.
    found = await asyncio.to_thread(complete_backups, Path(directory))
    return sorted(found, key=lambda backup: backup.created_at, reverse=True)
