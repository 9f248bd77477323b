"""/admin/users: the customers table (search, filters, segments, sort, keyset pages, all in the URL), the
customer page with its actions, exports (CSV streamed, Excel by a job) and bulk actions (dry run, run,
progress, report). Routes are thin: parse, call the domain's staff action, render; errors are shown next to
the field or form they belong to, and change nothing (the request's transaction is rolled back)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import exports
from app.admin.auth.dependencies import CurrentStaff, StaffViewer, require
from app.admin.forms import field_errors, undo
from app.admin.rendering import is_htmx, redirect, render
from app.admin.users.exports import CUSTOMERS
from app.admin.users.queries import PAGE_SIZE, STATUSES, CustomerFilters, CustomerQuery, Segment
from app.admin.users.schemas import RowId
from app.admin.users.views import load_detail
from app.connect import staff_devices
from app.deps import AppSettings, DbSession
from app.kit.errors import AppError, NotFound
from app.kit.field_errors import FieldInvalid
from app.kit.formatting import minor_text
from app.kit.i18n import available_languages
from app.kit.jobs import enqueue
from app.kit.money import Money, MoneyError
from app.models import BulkRun, ExportFile, JobState, Payment, Plan, User
from app.payments import refunds
from app.payments.operations import request_refund
from app.payments.registry import PROVIDERS
from app.subscriptions import staff_actions as subscriptions
from app.users import bulk
from app.users import staff_actions as users

router = APIRouter()

# The customers a bulk action's page lists by name (the report counts them all).
BULK_SHOWN = 500


def _t(request: Request, key: str, **params: Any) -> str:
    """A toast in the viewer's language (the same choice the page's templates make)."""
    return request.app.state.templates.base_context(request)["_"](key, **params)


async def _plans(db: AsyncSession) -> list[Plan]:
    return list((await db.scalars(select(Plan).order_by(Plan.sort_order, Plan.id))).all())


# --- the table ------------------------------------------------------------------------------------------------


def _filters(request: Request) -> tuple[CustomerFilters, dict[str, str]]:
    """The table's state from the URL; a bad value is reported next to its filter and the rest still apply."""
    raw = {key: value for key, value in request.query_params.items() if key not in ("cursor", "limit")}
    try:
        return CustomerFilters.model_validate(raw), {}
    except ValidationError as exc:
        errors = field_errors(exc)
        kept = {key: value for key, value in raw.items() if key not in errors}
        return CustomerFilters.model_validate(kept), errors


@router.get("/users", response_class=HTMLResponse)
async def customers(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("users:read")]
) -> HTMLResponse:
    filters, errors = _filters(request)
    query = CustomerQuery(filters)
    cursor = request.query_params.get("cursor") or None
    try:
        page = await query.page(db, cursor=cursor, limit=PAGE_SIZE)
    except AppError as exc:  # a damaged cursor: say so, show the first page
        errors["cursor"], cursor = exc.message, None
        page = await query.page(db, limit=PAGE_SIZE)
    context = {
        "section": "users",
        "filters": filters,
        "errors": errors,
        "view": query.list_state("/admin/users", cursor=cursor),
        "page": page,
        "plans": await _plans(db),
        "statuses": STATUSES,
        "segments": [segment.value for segment in Segment],
        "providers": list(PROVIDERS),
        "languages": available_languages(),
        "export_query": filters.query_params(),
        "telegram_chat": exports.own_chat(request),
        "can": viewer.can,
    }
    return render(request, "admin/users/list.html", context, status_code=422 if errors else 200)


# --- exports --------------------------------------------------------------------------------------------------


def _valid_filters(request: Request) -> dict[str, str]:
    filters, errors = _filters(request)
    if errors:
        name, message = next(iter(errors.items()))
        raise FieldInvalid(name, message)
    return filters.query_params()


@router.get("/users/export.csv")
async def export_csv(request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("export")]) -> Response:
    """The filtered customers as CSV, streamed; refused (nothing sent) above the size cap."""
    params = _valid_filters(request)
    total = await exports.check_size(db, CUSTOMERS.statement(params))
    exports.audit_csv(db, viewer.actor, CUSTOMERS, params, total)
    await db.commit()
    return exports.csv_response(request.app.state.resources.sessionmaker, CUSTOMERS, params)


@router.post("/users/export.xlsx", response_class=HTMLResponse)
async def export_excel(request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("export")]) -> Response:
    form = await request.form()
    filters = {key: str(value) for key, value in form.items() if key not in ("csrf_token", "to_telegram")}
    try:
        params = CustomerFilters.model_validate(filters).query_params()
    except ValidationError as exc:
        name, message = next(iter(field_errors(exc).items()))
        raise FieldInvalid(name, message) from None
    chat_id = exports.telegram_chat_of(request, form)
    export = await exports.request_excel(db, viewer.actor, CUSTOMERS, params, telegram_chat_id=chat_id)
    await db.commit()
    await enqueue(exports.EXCEL_JOB, export_id=export.id, _job_id=f"excel:{export.id}")
    return _export_status(request, export, status=202)


def _export_status(request: Request, export: ExportFile, *, status: int = 200) -> HTMLResponse:
    return render(request, "admin/users/export_status.html", {"export": export}, status_code=status)


async def _own_export(db: AsyncSession, viewer: StaffViewer, export_id: int) -> ExportFile:
    export = await db.get(ExportFile, export_id)
    # Another staff member's file is theirs (it may hold filters they alone chose): not found, not forbidden.
    if export is None or export.staff_id != viewer.staff.id:
        raise NotFound("No such export.")
    return export


@router.get("/users/exports/{export_id}", response_class=HTMLResponse)
async def export_status(
    request: Request, db: DbSession, export_id: RowId, viewer: Annotated[StaffViewer, require("export")]
) -> HTMLResponse:
    return _export_status(request, await _own_export(db, viewer, export_id))


@router.get("/users/exports/{export_id}/download")
async def export_download(
    db: DbSession, export_id: RowId, viewer: Annotated[StaffViewer, require("export")]
) -> Response:
    export = await _own_export(db, viewer, export_id)
    if export.state != JobState.DONE or export.content is None:
        raise AppError("The file is not ready yet.", code="export_not_ready", status_code=409)
    return Response(
        export.content,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers=exports.attachment(export.file_name or "customers.xlsx"),
    )


# --- bulk actions ---------------------------------------------------------------------------------------------


@router.post("/users/bulk", response_class=HTMLResponse)
async def bulk_dry_run(
    request: Request, db: DbSession, viewer: Annotated[StaffViewer, require("users:write")]
) -> Response:
    """A dry run over the filtered customers, or over the ones ticked in the table (`selected`)."""
    form = await request.form()
    selected = [int(value) for value in form.getlist("selected") if str(value).isdigit()]
    raw_filters = {key[2:]: str(value) for key, value in form.items() if key.startswith("f.")}
    params = {key: str(value) for key, value in form.items() if key in ("days", "reason", "text")}
    action = str(form.get("action") or "")
    try:
        filters = CustomerFilters.model_validate(raw_filters)
        user_ids = selected or await CustomerQuery(filters).ids(db, limit=bulk.MAX_CUSTOMERS + 1)
        source = {"selected": len(selected)} if selected else {"filters": filters.query_params()}
        run = await bulk.dry_run(db, viewer.actor, action, params, user_ids, source=source)
    except ValidationError as exc:
        return _bulk_form_error(request, field_errors(exc))
    except FieldInvalid as exc:
        return _bulk_form_error(request, {exc.field: exc.message})
    await db.commit()
    return await _bulk_page(request, db, run)


def _bulk_form_error(request: Request, errors: dict[str, str]) -> HTMLResponse:
    return render(
        request, "admin/users/bulk.html", {"section": "users", "run": None, "errors": errors}, status_code=422
    )


async def _bulk_page(request: Request, db: AsyncSession, run: BulkRun) -> HTMLResponse:
    ids = [int(uid) for uid in run.user_ids[:BULK_SHOWN]]
    people = {u.id: u for u in (await db.scalars(select(User).where(User.id.in_(ids)))).all()}
    context = {"section": "users", "run": run, "people": people, "errors": {}, "shown": ids}
    return render(request, "admin/users/bulk.html", context)


async def _run(db: AsyncSession, run_id: int) -> BulkRun:
    run = await db.get(BulkRun, run_id)
    if run is None:
        raise NotFound("No such bulk action.")
    return run


@router.get("/users/bulk/{run_id}", response_class=HTMLResponse)
async def bulk_status(
    request: Request, db: DbSession, run_id: RowId, viewer: Annotated[StaffViewer, require("users:write")]
) -> HTMLResponse:
    return await _bulk_page(request, db, await _run(db, run_id))


@router.get("/users/bulk/{run_id}/events")
async def bulk_events(
    request: Request, db: DbSession, run_id: RowId, viewer: Annotated[StaffViewer, require("users:write")]
) -> StreamingResponse:
    """The run's progress as server-sent events (`progress`, then `end` once it is over), read from the database
    every BULK_TICK seconds; the page's script moves its bar with them. Without the script the page itself shows
    the progress at each refresh."""
    await _run(db, run_id)
    await db.commit()  # the stream reads with short sessions of its own; this one would hold a connection
    translate = request.app.state.templates.base_context(request)["_"]
    sessionmaker = request.app.state.resources.sessionmaker
    return StreamingResponse(
        _bulk_stream(request, sessionmaker, run_id, translate),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


# How often the stream looks at the run, and after how many quiet looks it sends a comment so that proxies keep
# the connection open.
BULK_TICK = 1.0
BULK_KEEPALIVE_TICKS = 15


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _bulk_stream(
    request: Request, sessionmaker: Any, run_id: int, translate: Callable[..., str]
) -> AsyncIterator[bytes]:
    yield b"retry: 3000\n\n"
    last: dict[str, Any] | None = None
    quiet = 0
    while True:
        now = await bulk.progress_of(sessionmaker, run_id)
        if now is None:
            yield _event("end", {})
            return
        if now != last:
            text = translate(
                "admin_users.bulk.progress",
                **{k: now[k] for k in ("processed", "total", "changed", "skipped", "failed")},
            )
            yield _event("progress", {**now, "text": text})
            last, quiet = now, 0
        elif (quiet := quiet + 1) >= BULK_KEEPALIVE_TICKS:
            yield b": keep-alive\n\n"
            quiet = 0
        if now["state"] not in bulk.IN_PROGRESS:
            yield _event("end", now)
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(BULK_TICK)


@router.post("/users/bulk/{run_id}/start", response_class=HTMLResponse)
async def bulk_start(
    request: Request, db: DbSession, run_id: RowId, viewer: Annotated[StaffViewer, require("users:write")]
) -> Response:
    run = await bulk.start(db, viewer.actor, run_id)
    await db.commit()
    await enqueue(bulk.BULK_JOB, run_id=run.id, _job_id=f"bulk:{run.id}")
    return redirect(request, f"/admin/users/bulk/{run.id}")


# --- one customer ---------------------------------------------------------------------------------------------


async def _detail(
    request: Request,
    db: AsyncSession,
    viewer: StaffViewer,
    user_id: int,
    *,
    form: str | None = None,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    settings = request.app.state.settings
    detail = await load_detail(db, user_id, zone=settings.zone)
    payments = request.app.state.resources.payments
    # What each refundable payment can still give back (the form's default), and a one-time key per form, so
    # a double click on it is one refund.
    refundable = {
        p.id: left
        for p in detail.payments
        if p.status.value == "succeeded"
        and p.external_id
        and p.provider in payments
        and payments.get(p.provider).supports_refunds
        and (left := await refunds.refundable_minor(db, p)) > 0
    }
    partial = {
        p.id for p in detail.payments if p.id in refundable and payments.get(p.provider).supports_partial_refunds
    }
    refund_keys = {payment_id: uuid.uuid4().hex for payment_id in refundable}
    context = {
        "section": "users",
        "d": detail,
        "plans": await _plans(db),
        "can": viewer.can,
        "form": form,
        "errors": errors or {},
        "money": minor_text,
        "refundable": refundable,
        "partial_refunds": partial,
        "refund_keys": refund_keys,
        "major": lambda minor, currency: str(Money.from_minor(minor, currency).amount),
        "languages": available_languages(),
    }
    return render(request, "admin/users/detail.html", context, toasts=toasts, status_code=status)


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def customer(
    request: Request, db: DbSession, user_id: RowId, viewer: Annotated[StaffViewer, require("users:read")]
) -> HTMLResponse:
    return await _detail(request, db, viewer, user_id)


@router.get("/users/{user_id}/devices", response_class=HTMLResponse)
async def devices(
    request: Request, db: DbSession, user_id: RowId, viewer: Annotated[StaffViewer, require("users:read")]
) -> HTMLResponse:
    """The devices block, loaded after the page (it asks the panel, which may be slow or down)."""
    user = await users.get_user(db, user_id)
    subscription = await subscriptions.current_subscription(db, user, lock=False)
    error, found = None, None
    try:
        found = await staff_devices.list_devices(db, subscription, request.app.state.resources.panels)
    except AppError as exc:
        error = exc.message
    context = {"user": user, "devices": found, "error": error, "can": viewer.can}
    return render(request, "admin/users/devices.html", context)


Action = Callable[[AsyncSession, StaffViewer, Any, dict[str, str]], Awaitable[str]]


async def _act(
    request: Request,
    db: AsyncSession,
    viewer: StaffViewer,
    user_id: int,
    name: str,
    do: Action,
    *,
    lock_customer: bool = True,
) -> Response:
    """Run one action of the customer page: on success a toast (or a redirect without HTMX); on a refusal the
    page again with the error next to the form, and nothing changed. The customer's row is locked so two staff
    actions take turns, except for actions that call a panel while they run: a lock held over a network call
    (and on SQLite, over the demo panel's own writes to the same database) would make everyone else wait."""
    form = {key: str(value) for key, value in (await request.form()).items() if key != "csrf_token"}
    user = await users.get_user(db, user_id, for_update=lock_customer)
    try:
        message = await do(db, viewer, user, form)
        await db.flush()
    except FieldInvalid as exc:
        await undo(request, db)
        return await _detail(request, db, viewer, user_id, form=name, errors={exc.field: exc.message}, status=422)
    except AppError as exc:
        await undo(request, db)
        errors = {"__all__": exc.message}
        return await _detail(request, db, viewer, user_id, form=name, errors=errors, status=exc.status_code)
    await db.commit()
    if not is_htmx(request):
        return redirect(request, f"/admin/users/{user_id}")
    return await _detail(request, db, viewer, user_id, toasts=[("success", _t(request, message))])


def _int(form: dict[str, str], name: str) -> int:
    value = form.get(name, "").strip()
    if not value.lstrip("-").isdigit():
        raise FieldInvalid(name, "Give a whole number.")
    return int(value)


def _local_datetime(request: Request, form: dict[str, str], name: str) -> datetime:
    """A `datetime-local` field, read in the shop's time zone."""
    try:
        value = datetime.fromisoformat(form.get(name, ""))
    except ValueError:
        raise FieldInvalid(name, "Give a date and time.") from None
    return value.replace(tzinfo=request.app.state.settings.zone) if value.tzinfo is None else value


async def _block(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    await users.block(db, viewer.actor, user, form.get("reason"))
    return "admin_users.done.blocked"


async def _unblock(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    await users.unblock(db, viewer.actor, user, form.get("reason"))
    return "admin_users.done.unblocked"


async def _message(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    await users.message(db, viewer.actor, user, form.get("text"))
    return "admin_users.done.message_queued"


async def _profile(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    changes: dict[str, Any] = {
        "language": form.get("language"),
        "marketing_opt_out": form.get("marketing_opt_out") == "1",
    }
    changes["timezone"] = form.get("timezone") or None
    await users.update_profile(db, viewer.actor, user, changes)
    return "admin_users.done.saved"


async def _extend(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    subscription = await subscriptions.current_subscription(db, user)
    await subscriptions.extend(db, viewer.actor, subscription, _int(form, "days"))
    return "admin_users.done.end_changed"


def _set_end(request: Request) -> Action:
    async def do(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
        subscription = await subscriptions.current_subscription(db, user)
        await subscriptions.set_end_date(db, viewer.actor, subscription, _local_datetime(request, form, "ends_at"))
        return "admin_users.done.end_changed"

    return do


async def _cancel(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    await subscriptions.cancel(db, viewer.actor, await subscriptions.current_subscription(db, user))
    return "admin_users.done.cancelled"


async def _bonus(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    await subscriptions.grant_bonus_days(db, viewer.actor, user, _int(form, "days"))
    return "admin_users.done.bonus_granted"


async def _plan(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    subscription = await subscriptions.current_subscription(db, user)
    await subscriptions.change_plan(db, viewer.actor, subscription, _int(form, "plan_id"))
    return "admin_users.done.plan_changed"


async def _reset_traffic(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    await subscriptions.reset_traffic(db, viewer.actor, await subscriptions.current_subscription(db, user))
    return "admin_users.done.traffic_reset"


async def _reissue(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
    await subscriptions.reissue_link(db, viewer.actor, await subscriptions.current_subscription(db, user))
    return "admin_users.done.reissued"


def _remove_devices(request: Request) -> Action:
    async def do(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
        # Not locked: the panel is called while this runs (see _act).
        subscription = await subscriptions.current_subscription(db, user, lock=False)
        hwids = None if form.get("all") == "1" else [form.get("hwid", "")]
        panels = request.app.state.resources.panels
        await staff_devices.remove_devices(db, viewer.actor, subscription, panels, hwids)
        return "admin_users.done.devices_removed"

    return do


def _amount(form: dict[str, str], currency: str) -> int | None:
    """The refund form's amount in the payment's currency ("99.50"); empty means all that is left."""
    text = form.get("amount", "").strip().replace(",", ".")
    if not text:
        return None
    try:
        return Money.of(text, currency).minor
    except MoneyError:
        raise FieldInvalid("amount", f"Give an amount in {currency}, like 99.50.") from None


def _refund(request: Request, payment_id: int) -> Action:
    async def do(db: AsyncSession, viewer: StaffViewer, user: Any, form: dict[str, str]) -> str:
        payment = await db.get(Payment, payment_id, with_for_update=True)
        if payment is None or payment.user_id != user.id:
            raise NotFound("No such payment of this customer.")
        resources = request.app.state.resources
        actor = viewer.actor
        await request_refund(
            db,
            resources,
            payment,
            amount_minor=_amount(form, payment.currency),
            request_key=form.get("refund_key", "")[:64] or None,
            actor_type=actor.type,
            actor_id=actor.id,
            ip=actor.ip,
        )
        return "admin_users.done.refund_requested"

    return do


ACTIONS: dict[str, tuple[str, Action]] = {
    "block": ("users:write", _block),
    "unblock": ("users:write", _unblock),
    "message": ("users:write", _message),
    "profile": ("users:write", _profile),
    "extend": ("users:write", _extend),
    "cancel": ("users:write", _cancel),
    "bonus": ("users:write", _bonus),
    "plan": ("users:write", _plan),
    "reset-traffic": ("users:write", _reset_traffic),
    "reissue": ("users:write", _reissue),
}


def _action_route(name: str, permission: str, do: Action) -> None:
    # The permission goes in `dependencies`: a closure variable inside a string annotation (this module uses
    # postponed annotations) could not be resolved by FastAPI.
    async def route(request: Request, db: DbSession, user_id: RowId, viewer: CurrentStaff) -> Response:
        return await _act(request, db, viewer, user_id, name, do)

    route.__name__ = f"customer_{name.replace('-', '_')}"
    router.add_api_route(
        f"/users/{{user_id}}/{name}",
        route,
        methods=["POST"],
        response_class=HTMLResponse,
        dependencies=[require(permission)],
    )


for _name, (_permission, _do) in ACTIONS.items():
    _action_route(_name, _permission, _do)


@router.post("/users/{user_id}/set-end", response_class=HTMLResponse)
async def customer_set_end(
    request: Request, db: DbSession, user_id: RowId, viewer: Annotated[StaffViewer, require("users:write")]
) -> Response:
    return await _act(request, db, viewer, user_id, "set-end", _set_end(request))


@router.post("/users/{user_id}/devices/remove", response_class=HTMLResponse)
async def customer_remove_devices(
    request: Request, db: DbSession, user_id: RowId, viewer: Annotated[StaffViewer, require("users:write")]
) -> Response:
    return await _act(request, db, viewer, user_id, "devices", _remove_devices(request), lock_customer=False)


@router.post("/users/{user_id}/payments/{payment_id}/refund", response_class=HTMLResponse)
async def customer_refund(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    user_id: RowId,
    payment_id: RowId,
    viewer: Annotated[StaffViewer, require("money:refund")],
) -> Response:
    return await _act(request, db, viewer, user_id, f"refund-{payment_id}", _refund(request, payment_id))
