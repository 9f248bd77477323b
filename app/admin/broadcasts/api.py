"""POST /api/admin/broadcast (create, and optionally start or schedule), GET /api/admin/broadcast/history,
GET /api/admin/broadcast/{id} (with live figures) and POST …/{id}/pause|resume|cancel: the same service and
permission as the pages. A refusal is a 422 naming the field (`fields`), with nothing stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.broadcasts import queries
from app.admin.broadcasts.schemas import BroadcastDetailOut, BroadcastIn, BroadcastOut, FiguresOut
from app.admin.broadcasts.views import actor
from app.broadcasts import service
from app.broadcasts.errors import BroadcastInvalid
from app.deps import DbSession
from app.error_handlers import error_response
from app.inbound import RowId

router = APIRouter(prefix="/broadcast")


async def _detail(request: Request, db: AsyncSession, broadcast_id: int) -> BroadcastDetailOut:
    settings = request.app.state.settings
    shown = await service.preview(db, settings, broadcast_id)
    figures = await queries.figures(db, settings, broadcast_id)
    return BroadcastDetailOut(
        broadcast=BroadcastOut.of(shown.broadcast),
        recipients=shown.recipients,
        by_language=shown.by_language,
        figures=FiguresOut.of(figures),
    )


async def _refused(request: Request, db: AsyncSession, exc: BroadcastInvalid) -> Response:
    await db.rollback()  # nothing of a refused request is kept
    fields = [{"field": exc.field, "message": exc.message}] if exc.field else []
    return error_response(request, exc.status_code, exc.code, exc.message, fields=fields)


@router.post("", response_model=BroadcastDetailOut, status_code=201, responses={422: {"description": "Refused"}})
async def create_broadcast(
    request: Request, db: DbSession, body: BroadcastIn, viewer: Annotated[StaffViewer, require("broadcasts:send")]
) -> BroadcastDetailOut | Response:
    """Create a broadcast (Telegram HTML checked, segment resolved); with `start` it starts now, or at
    `scheduled_at`."""
    draft = service.Draft(
        title=body.title,
        bodies=body.bodies,
        segment=body.segment,
        plan_id=body.plan_id,
        language=body.language,
        button=service.Button(url=body.button.url, text=body.button.text) if body.button else None,
        is_paid=body.is_paid,
        scheduled_at=body.scheduled_at,
    )
    try:
        if body.start and request.app.state.resources.telegram is None:
            raise BroadcastInvalid("no bot is configured (BOT_TOKEN), so nothing can be sent", field="start")
        created = await service.create(db, request.app.state.settings, draft, actor(viewer))
        if body.start:
            await service.start(db, created.id, actor(viewer))
    except BroadcastInvalid as exc:
        return await _refused(request, db, exc)
    await db.flush()
    return await _detail(request, db, created.id)


@router.get("/history", response_model=list[BroadcastOut], dependencies=[require("broadcasts:send")])
async def broadcast_history(db: DbSession, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[BroadcastOut]:
    """The newest first, with their delivery figures."""
    return [BroadcastOut.of(b) for b in await queries.history(db, limit=limit)]


@router.get("/{broadcast_id}", response_model=BroadcastDetailOut, dependencies=[require("broadcasts:send")])
async def get_broadcast(request: Request, db: DbSession, broadcast_id: RowId) -> BroadcastDetailOut:
    return await _detail(request, db, broadcast_id)


async def _transition(
    request: Request, db: AsyncSession, broadcast_id: int, viewer: StaffViewer, name: str
) -> BroadcastDetailOut:
    action = {"pause": service.pause, "resume": service.resume, "cancel": service.cancel}[name]
    await action(db, broadcast_id, actor(viewer))
    await db.flush()
    return await _detail(request, db, broadcast_id)


@router.post("/{broadcast_id}/pause", response_model=BroadcastDetailOut)
async def pause_broadcast(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> BroadcastDetailOut:
    return await _transition(request, db, broadcast_id, viewer, "pause")


@router.post("/{broadcast_id}/resume", response_model=BroadcastDetailOut)
async def resume_broadcast(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> BroadcastDetailOut:
    return await _transition(request, db, broadcast_id, viewer, "resume")


@router.post("/{broadcast_id}/cancel", response_model=BroadcastDetailOut)
async def cancel_broadcast(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> BroadcastDetailOut:
    return await _transition(request, db, broadcast_id, viewer, "cancel")
