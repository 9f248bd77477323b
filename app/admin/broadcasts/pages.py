"""/admin/broadcasts: the history with delivery figures, the new-broadcast form (reach counted as the segment
changes, each language's body checked and previewed as typed), one broadcast's page (preview, test send to
oneself, start now or at a time, pause / resume / cancel) and its live figures, pushed by server-sent events.

Routes parse and call app/broadcasts/service.py, which validates and audits; a refusal is shown beside its field
with nothing changed (the request's transaction is rolled back)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.broadcasts import queries, views
from app.admin.forms import undo
from app.admin.rendering import is_htmx, redirect, render, translate
from app.broadcasts import service
from app.broadcasts.errors import BroadcastInvalid
from app.broadcasts.segments import Segment, parse_segment
from app.db import transaction
from app.deps import DbSession
from app.inbound import RowId
from app.kit.errors import AppError
from app.kit.i18n import available_languages
from app.models import Plan

router = APIRouter(prefix="/broadcasts")

# The event stream sends the figures every STREAM_INTERVAL seconds and ends once the broadcast is finished (the
# last figures sent) or after STREAM_SECONDS, when the browser's EventSource reconnects by itself.
STREAM_INTERVAL = 1.0
STREAM_SECONDS = 300.0


async def _form(request: Request) -> dict[str, str]:
    return {key: str(value) for key, value in (await request.form()).items() if key != "csrf_token"}


async def _plans(db: AsyncSession) -> list[Plan]:
    return list((await db.scalars(select(Plan).order_by(Plan.sort_order, Plan.id))).all())


# --- the history ----------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse, dependencies=[require("broadcasts:send")])
async def broadcasts_page(request: Request, db: DbSession) -> HTMLResponse:
    context = {"section": "broadcasts", "broadcasts": await queries.history(db)}
    return render(request, "admin/broadcasts/list.html", context)


# --- a new broadcast ------------------------------------------------------------------------------------------


async def _new_page(
    request: Request, db: AsyncSession, form: dict[str, str], errors: dict[str, str], *, status: int = 200
) -> HTMLResponse:
    context = {
        "section": "broadcasts",
        "values": form,
        "errors": errors,
        "segments": views.SEGMENTS,
        "plans": await _plans(db),
        "languages": available_languages(),
        "default_language": request.app.state.settings.default_language,
        "reach": await _reach_or_error(db, form),
        "previews": views.body_previews(form),
    }
    return render(request, "admin/broadcasts/new.html", context, status_code=status)


async def _reach_or_error(db: AsyncSession, form: dict[str, str]) -> dict[str, Any]:
    try:
        kind, plan_id, language = views.segment_fields(form)
        segment = await parse_segment(db, kind, plan_id=plan_id, language=language)
    except BroadcastInvalid as exc:
        return {"error": exc.message, "field": exc.field, "reach": None}
    return {"error": None, "field": None, "reach": await queries.reach(db, segment)}


@router.get("/new", response_class=HTMLResponse, dependencies=[require("broadcasts:send")])
async def new_broadcast(request: Request, db: DbSession) -> HTMLResponse:
    return await _new_page(request, db, {"segment": "all"}, {})


@router.get("/reach", response_class=HTMLResponse, dependencies=[require("broadcasts:send")])
async def reach(request: Request, db: DbSession) -> HTMLResponse:
    """The reach block alone, re-fetched by the form whenever its segment fields change."""
    form = {key: value for key, value in request.query_params.items() if key in ("segment", "plan_id", "language")}
    found = await _reach_or_error(db, form)
    context = {"reach": found, "languages": available_languages()}
    return render(request, "admin/broadcasts/reach.html", context, status_code=422 if found["error"] else 200)


@router.post("/preview", response_class=HTMLResponse, dependencies=[require("broadcasts:send")])
async def preview(request: Request) -> HTMLResponse:
    """Each language's body checked and shown as Telegram would, as it is typed (nothing is stored)."""
    previews = views.body_previews(await _form(request))
    failed = any(p["error"] for p in previews.values())
    return render(request, "admin/broadcasts/previews.html", {"previews": previews}, status_code=422 if failed else 200)


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("broadcasts:send")]
) -> Response:
    form = await _form(request)
    try:
        draft = views.draft_from_form(form, request.app.state.settings.zone)
        created = await service.create(db, request.app.state.settings, draft, views.actor(viewer))
    except BroadcastInvalid as exc:
        await undo(request, db)
        return await _new_page(request, db, form, {exc.field or "__all__": exc.message}, status=422)
    await db.commit()
    return redirect(request, f"/admin/broadcasts/{created.id}")


# --- one broadcast --------------------------------------------------------------------------------------------


async def _detail(
    request: Request,
    db: AsyncSession,
    broadcast_id: int,
    *,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    settings = request.app.state.settings
    shown = await service.preview(db, settings, broadcast_id)
    viewer: StaffViewer = request.state.staff_viewer
    context = {
        "section": "broadcasts",
        "b": shown.broadcast,
        "shown": shown,
        "segment": Segment.from_json(shown.broadcast.segment),
        "figures": await queries.figures(db, settings, broadcast_id),
        "bodies": {language: views.stored_preview(body) for language, body in shown.broadcast.bodies.items()},
        "errors": errors or {},
        "telegram_linked": viewer.staff.telegram_id is not None,
        "values": {},
    }
    return render(request, "admin/broadcasts/detail.html", context, toasts=toasts, status_code=status)


@router.get("/{broadcast_id}", response_class=HTMLResponse, dependencies=[require("broadcasts:send")])
async def broadcast_page(request: Request, db: DbSession, broadcast_id: RowId) -> HTMLResponse:
    return await _detail(request, db, broadcast_id)


@router.get("/{broadcast_id}/progress", response_class=HTMLResponse, dependencies=[require("broadcasts:send")])
async def progress(request: Request, db: DbSession, broadcast_id: RowId) -> HTMLResponse:
    """The counters block (where the event stream cannot reach, e.g. inside Telegram, the page polls this)."""
    figures = await queries.figures(db, request.app.state.settings, broadcast_id)
    return render(request, "admin/broadcasts/progress.html", {"figures": figures, "broadcast_id": broadcast_id})


@router.get("/{broadcast_id}/events", dependencies=[require("broadcasts:send")])
async def events(request: Request, db: DbSession, broadcast_id: RowId) -> Response:
    """Server-sent events: `progress` with the figures as JSON, whenever they change (and at least every 15 s
    as a keep-alive); the stream ends after the finished broadcast's last figures."""
    settings = request.app.state.settings
    await service.get(db, broadcast_id)  # a 404 now, not an empty stream
    await undo(request, db)  # the stream reads in short transactions of its own, not in the request's
    sessionmaker = request.app.state.resources.sessionmaker

    async def stream() -> AsyncIterator[str]:
        last: str | None = None
        quiet = 0.0
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_SECONDS
        yield "retry: 2000\n\n"
        while loop.time() < ends:
            async with transaction(sessionmaker) as session:
                figures = await queries.figures(session, settings, broadcast_id)
            payload = json.dumps(figures.as_json(), separators=(",", ":"))
            if payload != last or quiet >= 15:
                yield f"event: progress\ndata: {payload}\n\n"
                last, quiet = payload, 0.0
            if figures.finished or await request.is_disconnected():
                return
            await asyncio.sleep(STREAM_INTERVAL)
            quiet += STREAM_INTERVAL

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


Change = Callable[[AsyncSession, int, service.Actor], Awaitable[Any]]


async def _change(
    request: Request, db: AsyncSession, viewer: StaffViewer, broadcast_id: int, do: Change, done: str
) -> Response:
    try:
        await do(db, broadcast_id, views.actor(viewer))
        await db.flush()
    except BroadcastInvalid as exc:
        await undo(request, db)
        return await _detail(request, db, broadcast_id, errors={exc.field or "__all__": exc.message}, status=422)
    except AppError as exc:
        await undo(request, db)
        return await _detail(request, db, broadcast_id, errors={"__all__": exc.message}, status=exc.status_code)
    await db.commit()
    if not is_htmx(request):
        return redirect(request, f"/admin/broadcasts/{broadcast_id}")
    return await _detail(request, db, broadcast_id, toasts=[("success", translate(request, done))])


@router.post("/{broadcast_id}/start", response_class=HTMLResponse)
async def start(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> Response:
    """Start now, or at the time given (a blank time with one set at creation keeps that one)."""
    form = await _form(request)

    async def do(session: AsyncSession, bid: int, who: service.Actor) -> Any:
        if request.app.state.resources.telegram is None:
            # As the CLI: a started broadcast would wait forever for a sender that cannot send.
            raise BroadcastInvalid("no bot is configured (BOT_TOKEN), so nothing can be sent")
        at = views.local_datetime(form, "scheduled_at", request.app.state.settings.zone)
        return await service.start(session, bid, who, at=at, now=form.get("now") == "1")

    return await _change(request, db, viewer, broadcast_id, do, "admin_broadcasts.done.started")


@router.post("/{broadcast_id}/pause", response_class=HTMLResponse)
async def pause(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> Response:
    return await _change(request, db, viewer, broadcast_id, service.pause, "admin_broadcasts.done.paused")


@router.post("/{broadcast_id}/resume", response_class=HTMLResponse)
async def resume(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> Response:
    return await _change(request, db, viewer, broadcast_id, service.resume, "admin_broadcasts.done.resumed")


@router.post("/{broadcast_id}/cancel", response_class=HTMLResponse)
async def cancel(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> Response:
    return await _change(request, db, viewer, broadcast_id, service.cancel, "admin_broadcasts.done.cancelled")


@router.post("/{broadcast_id}/test", response_class=HTMLResponse)
async def test_send(
    request: Request,
    db: DbSession,
    broadcast_id: RowId,
    viewer: Annotated[StaffViewer, require("broadcasts:send")],
) -> Response:
    """Send it to the staff member's own linked Telegram account now (counted nowhere, audited)."""
    form = await _form(request)
    telegram_id = viewer.staff.telegram_id
    if telegram_id is None:
        message = translate(request, "admin_broadcasts.test.not_linked")
        return await _detail(request, db, broadcast_id, errors={"test": message}, status=422)
    resources = request.app.state.resources
    language = (form.get("language") or "").strip() or None
    await undo(request, db)  # send_test reads and audits in transactions of its own
    try:
        await service.send_test(
            resources.sessionmaker,
            resources.telegram,
            request.app.state.settings,
            broadcast_id,
            telegram_id,
            views.actor(viewer),
            language=language,
        )
    except AppError as exc:
        return await _detail(request, db, broadcast_id, errors={"test": exc.message}, status=exc.status_code)
    toast = translate(request, "admin_broadcasts.done.test_sent")
    return await _detail(request, db, broadcast_id, toasts=[("success", toast)])
