"""/admin/staff: owners create staff accounts, change roles and per-person permission overrides, deactivate
(which revokes every session and API token), reset a lost second factor, unlock, link a Telegram account, and
see each person's sessions and last sign-in. The rules are in app/staff/service.py; this is the page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.forms import parse_form
from app.admin.rendering import render, translate
from app.deps import DbSession
from app.inbound import RowId
from app.kit.errors import NotFound
from app.models import Staff, StaffRole
from app.staff import service
from app.staff.permissions import PERMISSIONS, ROLE_PRESETS, permissions_of
from app.staff.sessions import list_sessions

router = APIRouter()
MANAGE = "staff:manage"


class NewStaff(BaseModel):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=10, max_length=256)
    role: StaffRole
    telegram_id: int | None = Field(None, gt=0, lt=2**53)


class TelegramLink(BaseModel):
    telegram_id: int | None = Field(None, gt=0, lt=2**53)

    @field_validator("telegram_id", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return None if value in ("", None) else value


async def _staff(db: DbSession, staff_id: RowId) -> Staff:
    staff = await db.get(Staff, staff_id)
    if staff is None:
        raise NotFound("No such staff member.")
    return staff


async def _list_page(
    request: Request,
    db: DbSession,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    members = (await db.scalars(select(Staff).order_by(Staff.is_active.desc(), Staff.role, Staff.username))).all()
    context = {
        "section": "staff",
        "members": members,
        "roles": [role.value for role in StaffRole],
        "form": form or {},
        "errors": errors or {},
    }
    return render(request, "admin/staff/list.html", context, toasts=toasts, status_code=status)


async def _detail_page(
    request: Request,
    db: DbSession,
    viewer: StaffViewer,
    staff: Staff,
    *,
    errors: dict[str, str] | None = None,
    toasts: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    overrides = staff.permission_overrides or {}
    context = {
        "section": "staff",
        "member": staff,
        "is_me": staff.id == viewer.staff.id,
        "sessions": await list_sessions(db, staff.id),
        "permissions": PERMISSIONS,
        "preset": ROLE_PRESETS[staff.role],
        "effective": permissions_of(staff),
        "granted": set(overrides.get("grant") or []),
        "revoked": set(overrides.get("revoke") or []),
        "roles": [role.value for role in StaffRole],
        "errors": errors or {},
    }
    return render(request, "admin/staff/detail.html", context, toasts=toasts, status_code=status)


@router.get("/staff", response_class=HTMLResponse)
async def staff_list(request: Request, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]) -> Response:
    return await _list_page(request, db)


@router.post("/staff", response_class=HTMLResponse)
async def staff_create(request: Request, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]) -> Response:
    data = dict(await request.form())
    shown = {k: v for k, v in data.items() if k != "password"}
    form, errors = parse_form(NewStaff, data)
    if form is None:
        return await _list_page(request, db, form=shown, errors=errors, status=422)
    try:
        await service.add_staff(db, form.username, form.password, form.role.value, form.telegram_id, actor=viewer.actor)
    except service.StaffError as exc:
        return await _list_page(request, db, form=shown, errors={exc.field: str(exc)}, status=422)
    return await _list_page(
        request, db, toasts=[("success", translate(request, "admin.staff.toast.created", name=form.username))]
    )


@router.get("/staff/{staff_id}", response_class=HTMLResponse)
async def staff_detail(
    request: Request, staff_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    return await _detail_page(request, db, viewer, await _staff(db, staff_id))


async def _act(request: Request, db: DbSession, viewer: StaffViewer, staff: Staff, change: Any, done: str) -> Response:
    """Run one service change; a refused change re-renders the page with the reason and changes nothing (the
    services check everything before they touch the row)."""
    try:
        await change
    except service.StaffError as exc:
        field = exc.field if exc.field != "__all__" else "action"
        return await _detail_page(request, db, viewer, staff, errors={field: str(exc)}, status=422)
    return await _detail_page(request, db, viewer, staff, toasts=[("success", translate(request, done))])


@router.post("/staff/{staff_id}/role", response_class=HTMLResponse)
async def staff_role(
    request: Request,
    staff_id: RowId,
    db: DbSession,
    viewer: Annotated[StaffViewer, require(MANAGE)],
    role: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    staff = await _staff(db, staff_id)
    return await _act(
        request, db, viewer, staff, service.change_role(db, staff, role, actor=viewer.actor), "admin.staff.toast.role"
    )


@router.post("/staff/{staff_id}/permissions", response_class=HTMLResponse)
async def staff_permissions(
    request: Request, staff_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    """The form has one select per permission: "" (as the role), "grant" or "revoke"."""
    staff = await _staff(db, staff_id)
    form = await request.form()
    grant, revoke, unknown = [], [], []
    for key, value in form.multi_items():
        if not key.startswith("perm:") or value == "":
            continue
        name = key.removeprefix("perm:")
        if value == "grant":
            grant.append(name)
        elif value == "revoke":
            revoke.append(name)
        else:
            unknown.append(key)
    if unknown:
        return await _detail_page(
            request,
            db,
            viewer,
            staff,
            errors={"overrides": f"expected grant or revoke: {', '.join(unknown)}"},
            status=422,
        )
    change = service.set_overrides(db, staff, grant, revoke, actor=viewer.actor)
    return await _act(request, db, viewer, staff, change, "admin.staff.toast.permissions")


@router.post("/staff/{staff_id}/deactivate", response_class=HTMLResponse)
async def staff_deactivate(
    request: Request, staff_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    staff = await _staff(db, staff_id)
    change = service.deactivate(db, staff, actor=viewer.actor)
    return await _act(request, db, viewer, staff, change, "admin.staff.toast.deactivated")


@router.post("/staff/{staff_id}/activate", response_class=HTMLResponse)
async def staff_activate(
    request: Request, staff_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    staff = await _staff(db, staff_id)
    return await _act(
        request, db, viewer, staff, service.activate(db, staff, actor=viewer.actor), "admin.staff.toast.activated"
    )


@router.post("/staff/{staff_id}/reset-2fa", response_class=HTMLResponse)
async def staff_reset_2fa(
    request: Request, staff_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    staff = await _staff(db, staff_id)
    change = service.reset_two_factor(db, staff, actor=viewer.actor)
    return await _act(request, db, viewer, staff, change, "admin.staff.toast.2fa_reset")


@router.post("/staff/{staff_id}/unlock", response_class=HTMLResponse)
async def staff_unlock(
    request: Request, staff_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    staff = await _staff(db, staff_id)
    return await _act(
        request, db, viewer, staff, service.unlock(db, staff, actor=viewer.actor), "admin.staff.toast.unlocked"
    )


@router.post("/staff/{staff_id}/telegram", response_class=HTMLResponse)
async def staff_telegram(
    request: Request, staff_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    staff = await _staff(db, staff_id)
    form, errors = parse_form(TelegramLink, dict(await request.form()))
    if form is None:
        return await _detail_page(request, db, viewer, staff, errors=errors, status=422)
    change = service.link_telegram(db, staff, form.telegram_id, actor=viewer.actor)
    return await _act(request, db, viewer, staff, change, "admin.staff.toast.telegram")


@router.post("/staff/{staff_id}/sessions/{session_id}/revoke", response_class=HTMLResponse)
async def staff_end_session(
    request: Request, staff_id: RowId, session_id: RowId, db: DbSession, viewer: Annotated[StaffViewer, require(MANAGE)]
) -> Response:
    staff = await _staff(db, staff_id)
    if not await service.end_session(db, staff, session_id, actor=viewer.actor):
        raise NotFound("No such live session of this staff member.")
    return await _detail_page(
        request, db, viewer, staff, toasts=[("success", translate(request, "admin.staff.toast.session_ended"))]
    )
