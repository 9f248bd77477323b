"""Records every job run (started, finished, outcome, error) so staff can see it in the admin."""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.db import transaction
from app.kit.clock import utcnow
from app.kit.jobs import JobEventHook, JobPhase
from app.kit.metrics import JOB_RUNS
from app.models import JobRun
from app.resources import Resources

log = logging.getLogger(__name__)


def job_run_recorder(resources: Resources) -> JobEventHook:
    """A job-event hook writing JobRun rows; a failure to record never fails the job itself."""

    async def on_job_event(name: str, phase: JobPhase, error: BaseException | None) -> None:
        try:
            async with transaction(resources.sessionmaker) as session:
                if phase == "started":
                    session.add(JobRun(job_name=name, started_at=utcnow(), outcome="running"))
                    return
                JOB_RUNS.labels(name, "ok" if phase == "finished" else "failed").inc()
                run = await session.scalar(
                    select(JobRun)
                    .where(JobRun.job_name == name, JobRun.outcome == "running")
                    .order_by(JobRun.id.desc())
                    .limit(1)
                )
                if run is None:
                    run = JobRun(job_name=name, started_at=utcnow())
                    session.add(run)
                run.finished_at = utcnow()
                run.outcome = "ok" if phase == "finished" else "failed"
                run.error = None if error is None else f"{type(error).__name__}: {error}"[:2000]
        except Exception:
            log.exception("could not record %s of job %s", phase, name)

    return on_job_event
