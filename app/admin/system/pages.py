"""/admin/system: what runs behind the shop — each job's last run, duration and recent failures; the outbox by
topic (pending, failing, dead with the reason) with "retry now"; the payment events received; backups (list,
make one now, download for owners). Reads are in queries.py; the retry is the outbox's own rule
(app/outbox/service.py), audited here as a staff action."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.rendering import render, translate
from app.admin.system import queries
from app.audit.service import record_by
from app.deps import AppSettings, DbSession
from app.inbound import RowId
from app.kit.clock import utcnow
from app.kit.errors import AppError, NotFound
from app.kit.jobs import enqueue
from app.outbox import service as outbox

router = APIRouter(prefix="/system")
PERMISSION = "system:manage"
BACKUP_JOB = "backup_now"


async def _page(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    viewer: StaffViewer,
    *,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    now = utcnow()
    context = {
        "section": "system",
        "jobs": await queries.jobs(db, now),
        "outbox": await queries.outbox_counts(db),
        "troubled": await queries.troubled(db),
        "events": await queries.payment_events(db),
        "receipts": await queries.webhook_receipts(db),
        "backups": await queries.backups(settings.backup_dir),
        "backup_enabled": settings.backup_enabled,
        "can_download": viewer.can("backups:download"),
    }
    return render(request, "admin/system/index.html", context, toasts=toasts, status_code=status)


@router.get("", response_class=HTMLResponse)
async def system_page(
    request: Request, db: DbSession, settings: AppSettings, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> HTMLResponse:
    return await _page(request, db, settings, viewer)


@router.post("/outbox/{message_id}/retry", response_class=HTMLResponse)
async def retry_message(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    message_id: RowId,
    viewer: Annotated[StaffViewer, require(PERMISSION)],
) -> Response:
    try:
        message, before = await outbox.retry(db, message_id)
    except AppError as exc:
        if exc.status_code == 404:
            raise
        return await _page(request, db, settings, viewer, toasts=[("error", exc.message)], status=exc.status_code)
    record_by(
        db,
        viewer.actor,
        action="outbox.retry",
        entity_type="outbox_message",
        entity_id=message.id,
        before=before,
        after={"status": message.status.value, "attempts": 0},
    )
    toast = translate(request, "admin_system.retried", id=message.id)
    return await _page(request, db, settings, viewer, toasts=[("success", toast)])


@router.post("/backups", response_class=HTMLResponse)
async def backup_now(
    request: Request, db: DbSession, settings: AppSettings, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> Response:
    """Queue a backup now; the worker makes it (a database dump takes longer than a request should)."""
    queued = await enqueue(BACKUP_JOB, _job_id=f"{BACKUP_JOB}:manual")
    record_by(
        db, viewer.actor, action="backup.requested", entity_type="backup", entity_id=None, after={"queued": queued}
    )
    key = "admin_system.backup_queued" if queued else "admin_system.backup_running"
    return await _page(request, db, settings, viewer, toasts=[("success", translate(request, key))])


BackupName = Annotated[str, Path(max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]


@router.get("/backups/{name}")
async def download_backup(
    db: DbSession, settings: AppSettings, name: BackupName, viewer: Annotated[StaffViewer, require("backups:download")]
) -> FileResponse:
    """One backup file, found among the listed ones by name (never a path from the request)."""
    found = next((b for b in await queries.backups(settings.backup_dir) if b.path.name == name), None)
    if found is None:
        raise NotFound("No such backup.")
    record_by(db, viewer.actor, action="backup.download", entity_type="backup", entity_id=name[:64])
    await db.commit()  # the record of who took a copy of every customer's data exists before the file leaves
    return FileResponse(FilePath(found.path), filename=name, media_type="application/octet-stream")
