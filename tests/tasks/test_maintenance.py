"""Housekeeping: old job runs are pruned by outcome and age; recent ones and running ones stay."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import create_sessionmaker
from app.kit.clock import utcnow
from app.models import JobRun
from tasks.maintenance import prune_job_runs


async def test_prune_job_runs_keeps_recent_runs_failures_longer_and_running_ones(
    db: AsyncSession, engine: AsyncEngine
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

    ctx = {"resources": SimpleNamespace(sessionmaker=create_sessionmaker(engine))}
    assert await prune_job_runs(ctx) == 2

    await db.rollback()
    kept = set((await db.scalars(select(JobRun.job_name))).all())
    assert kept == {"ok-new", "failed-new", "running-old"}
