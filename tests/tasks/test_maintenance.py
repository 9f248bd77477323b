"""Housekeeping: old job runs are pruned by outcome and age (recent ones and running ones stay), and webhook
receipts past their retention are pruned (recent ones stay)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import create_sessionmaker
from app.kit.clock import utcnow
from app.models import JobRun, WebhookReceipt
from tasks.maintenance import prune_old_records
from tests.conftest import make_settings


async def test_prune_job_runs_keeps_recent_runs_failures_longer_and_running_ones(
    db: AsyncSession, engine: AsyncEngine, database_url: str
) -> None:
    now = utcnow()
    ages = {
        "ok-old": ("ok", 4),
        "ok-new": ("ok", 2),
        "failed-old": ("failed", 31),
        "failed-new": ("failed", 10),
        "running-old": ("running", 40),
    }
    db.add_all(
        JobRun(job_name=name, outcome=outcome, started_at=now - timedelta(days=days))
        for name, (outcome, days) in ages.items()
    )
    await db.commit()

    ctx = {"resources": SimpleNamespace(sessionmaker=create_sessionmaker(engine), settings=make_settings(database_url))}
    assert await prune_old_records(ctx) == {"job_runs": 2, "webhook_receipts": 0}

    await db.rollback()
    kept = set((await db.scalars(select(JobRun.job_name))).all())
    assert kept == {"ok-new", "failed-new", "running-old"}


async def test_webhook_receipts_past_the_retention_are_pruned_and_recent_ones_kept(
    db: AsyncSession, engine: AsyncEngine, database_url: str
) -> None:
    now = utcnow()
    ages = {"ancient": 400, "old": 31, "edge-kept": 29, "recent": 1, "now": 0}
    db.add_all(
        WebhookReceipt(
            source="payment", sender=name, verdict="accepted", status_code=200, received_at=now - timedelta(days=days)
        )
        for name, days in ages.items()
    )
    await db.commit()

    settings = make_settings(database_url, webhook_receipt_retention_days=30)
    ctx = {"resources": SimpleNamespace(sessionmaker=create_sessionmaker(engine), settings=settings)}
    assert await prune_old_records(ctx) == {"job_runs": 0, "webhook_receipts": 2}
    await db.rollback()
    assert set((await db.scalars(select(WebhookReceipt.sender))).all()) == {"edge-kept", "recent", "now"}

    # A shorter retention set by the operator prunes more on the next run; nothing is pruned twice.
    ctx["resources"].settings = make_settings(database_url, webhook_receipt_retention_days=7)
    assert await prune_old_records(ctx) == {"job_runs": 0, "webhook_receipts": 1}
    await db.rollback()
    assert set((await db.scalars(select(WebhookReceipt.sender))).all()) == {"recent", "now"}
