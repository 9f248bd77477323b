"""Broadcast jobs: a dispatcher every five seconds that starts what is due and gives every running broadcast
without a live sender a `send_broadcast` job, and the job itself, which sends one slice (app/broadcasts/sender.py)
and enqueues its own continuation so arq's job_timeout never cuts a send short."""

from __future__ import annotations

import logging
from typing import Any

from arq.connections import ArqRedis

from app.broadcasts import lease
from app.broadcasts.sender import run_broadcast
from app.broadcasts.service import start_due
from app.db import transaction
from app.kit.clock import utcnow
from app.kit.jobs import JobContext, enqueue, registry

log = logging.getLogger(__name__)

SEND_JOB = "send_broadcast"


@registry.cron(second=set(range(0, 60, 5)))
async def dispatch_broadcasts(ctx: JobContext) -> dict[str, list[int]]:
    """Start scheduled broadcasts whose time has come; enqueue a sender for each running broadcast that has
    none (just started or resumed, or its worker died and the lease lapsed)."""
    sessionmaker = ctx["resources"].sessionmaker
    now = utcnow()
    async with transaction(sessionmaker) as session:
        started = await start_due(session, now)
    async with transaction(sessionmaker) as session:
        unattended = await lease.unattended(session, now)
    if unattended and ctx["resources"].telegram is None:
        log.warning("%d broadcasts are waiting, but no bot is configured (BOT_TOKEN)", len(unattended))
        return {"started": started, "enqueued": []}
    enqueued = []
    for broadcast_id, moment in unattended:
        # One job id per unattended moment: the next ticks do not pile up jobs for the same broadcast, and a
        # job id left behind by a killed worker never blocks the resumption.
        if await _enqueue(ctx, f"broadcast:{moment}", broadcast_id=broadcast_id):
            enqueued.append(broadcast_id)
    return {"started": started, "enqueued": enqueued}


@registry.job
async def send_broadcast(ctx: JobContext, broadcast_id: int, owner: str | None = None) -> dict[str, Any]:
    """Send one slice of a broadcast; at the slice's end, enqueue the next one with the lease handed to it."""
    result = await run_broadcast(ctx["resources"], broadcast_id, owner=owner)
    if result.outcome == "handover" and result.successor is not None:
        # If this enqueue fails, the handed-over lease lapses and the dispatcher resumes the broadcast.
        successor = result.successor
        await _enqueue(ctx, f"broadcast:{broadcast_id}:{successor}", broadcast_id=broadcast_id, owner=successor)
    return {"broadcast_id": broadcast_id, "outcome": result.outcome, "sent": result.sent}


async def _enqueue(ctx: JobContext, job_id: str, **kwargs: Any) -> bool:
    """Enqueue `send_broadcast` on whatever runs this job: the arq worker's own Redis pool, or the app's runner
    (the in-process demo)."""
    pool = ctx.get("redis")
    try:
        if isinstance(pool, ArqRedis):
            return await pool.enqueue_job(SEND_JOB, _job_id=job_id, **kwargs) is not None
        return await enqueue(SEND_JOB, _job_id=job_id, **kwargs)
    except Exception:
        log.exception("could not enqueue %s (%s)", SEND_JOB, job_id)
        return False
