"""The admin's sign-in pages (/admin/login, TOTP enrolment, the demo's one-click admin, sign-out) and each
staff member's own account page (/admin/account: two-factor, own sessions)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from app.admin.auth import totp
from app.admin.auth.dependencies import StaffViewer, audit_denied, require
from app.admin.auth.service import must_use_2fa, password_sign_in
from app.admin.rendering import redirect, render, translate
from app.audit.service import Actor, record_by
from app.auth.dependencies import CsrfFailed
from app.auth.pages import LOGIN_CSRF_COOKIE, login_csrf, secure_cookies, set_login_csrf
from app.config import Settings
from app.connect.qr import qr_svg
from app.deps import AppSettings, DbSession, client_ip
from app.inbound import RowId
from app.kit.errors import AppError, NotFound
from app.models import Staff
from app.staff.sessions import (
    ADMIN_COOKIE,
    SESSION_LIFETIME,
    csrf_valid,
    list_sessions,
    resolve_session,
    revoke_session,
    start_session,
)

router = APIRouter(prefix="/admin", include_in_schema=False)
account_router = APIRouter()


def safe_admin_next(value: str | None) -> str:
    """Only a page of the admin: an open redirect after sign-in would hand the session to a phishing page."""
    if value and value.startswith("/admin") and not value.startswith("/admin/login") and "//" not in value:
        return value
    return "/admin"


def _actor(request: Request) -> Actor:
    return Actor("anonymous", None, client_ip(request), request.headers.get("user-agent"))


def _check_login_csrf(request: Request, submitted: str) -> None:
    """The double-submit check of the sign-in forms, with the customers' sign-in cookie (one per browser)."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, submitted):
        raise CsrfFailed()


def _login_page(
    request: Request,
    settings: Settings,
    *,
    next_url: str,
    username: str = "",
    error: AppError | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    token = login_csrf(request)
    context = {"next_url": next_url, "username": username, "error": error, "errors": errors or {}, "login_csrf": token}
    headers = {"retry-after": str(error.retry_after)} if error is not None and hasattr(error, "retry_after") else None
    response = render(request, "admin/auth/login.html", context, status_code=status, headers=headers)
    return set_login_csrf(response, token, settings)


async def signed_in(
    request: Request, db: DbSession, settings: Settings, staff: Staff, *, method: str, next_url: str
) -> Response:
    """Open an admin session for `staff`, audit it, set the cookie and go on."""
    ip, agent = client_ip(request), request.headers.get("user-agent")
    token = await start_session(db, staff, method=method, user_agent=agent, ip=ip)
    record_by(
        db,
        Actor("staff", staff.id, ip, agent),
        action="admin.signed_in",
        entity_type="staff",
        entity_id=staff.id,
        after={"method": method},
    )
    response = redirect(request, safe_admin_next(next_url))
    response.set_cookie(
        ADMIN_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        secure=secure_cookies(settings),
        # Strict: the admin is never entered from a link on another site with the session attached.
        samesite="strict",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, db: DbSession, settings: AppSettings, next: str | None = None) -> Response:
    cookie = request.cookies.get(ADMIN_COOKIE)
    if cookie and await resolve_session(db, cookie, idle_timeout=_idle(settings)) is not None:
        return redirect(request, safe_admin_next(next))
    return _login_page(request, settings, next_url=safe_admin_next(next))


def _idle(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.admin_idle_timeout_minutes)


@router.post("/login", response_model=None)
async def login(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    otp: Annotated[str, Form(max_length=16)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=512)] = "/admin",
) -> Response:
    _check_login_csrf(request, csrf_token)
    username = username.strip()
    missing = {name: "Required" for name, value in (("username", username), ("password", password)) if not value}
    if missing:
        return _login_page(
            request, settings, next_url=safe_admin_next(next), username=username, errors=missing, status=422
        )
    outcome = await password_sign_in(
        db,
        request.app.state.resources.rate_limiter,
        username=username,
        password=password,
        otp=otp or None,
        require_2fa=settings.admin_require_2fa,
        actor=_actor(request),
    )
    if outcome.error is not None or outcome.staff is None:
        error = outcome.error or AppError()
        field = "otp" if error.code in {"otp_required", "otp_invalid"} else None
        return _login_page(
            request,
            settings,
            next_url=safe_admin_next(next),
            username=username,
            error=None if field else error,
            errors={field: error.message} if field else {},
            status=error.status_code,
        )
    if outcome.must_enrol:
        return _enrol_page(request, settings, outcome.staff, next_url=next)
    return await signed_in(request, db, settings, outcome.staff, method="password", next_url=next)


def _enrol_page(
    request: Request,
    settings: Settings,
    staff: Staff,
    *,
    next_url: str,
    secret: str | None = None,
    error: str | None = None,
    action: str = "/admin/login/enrol",
    status: int = 200,
) -> HTMLResponse:
    """The TOTP enrolment form: a fresh secret as a QR code and text, with a signed ticket binding it to the
    staff member for 15 minutes (nothing is stored until a first code confirms it)."""
    secret = secret or totp.new_secret()
    uri = totp.provisioning_uri(secret, staff.username)
    token = login_csrf(request)
    context = {
        "staff": staff,
        "secret": secret,
        "ticket": totp.enrol_ticket(staff.id, secret, settings.secret_key),
        "qr": qr_svg(uri, title="TOTP"),
        "uri": uri,
        "next_url": safe_admin_next(next_url),
        "error": error,
        "login_csrf": token,
        "action": action,
        "demo_code": totp.current_code(secret) if settings.demo_mode else None,
    }
    response = render(request, "admin/auth/enrol.html", context, status_code=status)
    return set_login_csrf(response, token, settings)


async def _confirm_enrolment(db: DbSession, settings: Settings, ticket: str, secret: str, code: str) -> Staff | None:
    """Store the secret if the ticket is genuine and `code` matches it; the enrolled staff member, else None."""
    staff_id = totp.check_ticket(ticket, secret, settings.secret_key)
    staff = await db.get(Staff, staff_id) if staff_id is not None else None
    if staff is None or not staff.is_active:
        return None
    step = totp.matching_step(secret, code, after=None)
    if step is None:
        return None
    staff.totp_secret = totp.encrypt_secret(secret)
    staff.totp_last_step = step
    return staff


@router.post("/login/enrol", response_model=None)
async def login_enrol(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    ticket: Annotated[str, Form(max_length=256)] = "",
    secret: Annotated[str, Form(max_length=64)] = "",
    otp: Annotated[str, Form(max_length=16)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=512)] = "/admin",
) -> Response:
    _check_login_csrf(request, csrf_token)
    staff = await _confirm_enrolment(db, settings, ticket, secret, otp)
    if staff is None:
        staff_id = totp.check_ticket(ticket, secret, settings.secret_key)
        known = await db.get(Staff, staff_id) if staff_id is not None else None
        if known is None:
            await audit_denied(request, "enrol_ticket_invalid")
            return _login_page(
                request,
                settings,
                next_url=safe_admin_next(next),
                status=401,
                error=AppError("The enrolment has expired; sign in again.", status_code=401),
            )
        return _enrol_page(
            request,
            settings,
            known,
            next_url=next,
            secret=secret,
            status=422,
            error="The code does not match; enter the current code from the app.",
        )
    record_by(
        db,
        Actor("staff", staff.id, client_ip(request), request.headers.get("user-agent")),
        action="staff.2fa_enrolled",
        entity_type="staff",
        entity_id=staff.id,
        after={"totp": True},
    )
    return await signed_in(request, db, settings, staff, method="password", next_url=next)


@router.post("/login/demo", response_model=None)
async def login_demo(
    request: Request, db: DbSession, settings: AppSettings, csrf_token: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """The embedded demo's one-click sign-in as its demo owner; does not exist outside demo mode."""
    if not settings.demo_mode:
        raise NotFound()
    _check_login_csrf(request, csrf_token)
    staff = await db.scalar(select(Staff).where(Staff.is_demo, Staff.is_active).order_by(Staff.id).limit(1))
    if staff is None:
        raise NotFound("The demo admin has not been created; run `vpnshop demo`.")
    return await signed_in(request, db, settings, staff, method="demo", next_url="/admin")


@router.post("/logout", response_model=None)
async def logout(
    request: Request, db: DbSession, settings: AppSettings, csrf_token: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """Ends this browser's admin session (CSRF-checked: a cross-site post must not sign staff out)."""
    cookie = request.cookies.get(ADMIN_COOKIE)
    if cookie:
        resolved = await resolve_session(db, cookie, idle_timeout=_idle(settings))
        if resolved is not None:
            submitted = request.headers.get("x-csrf-token") or csrf_token
            if not csrf_valid(submitted, cookie, settings.secret_key):
                raise CsrfFailed()
            await revoke_session(db, resolved.staff.id, resolved.record.id)
            record_by(
                db,
                Actor("staff", resolved.staff.id, client_ip(request), request.headers.get("user-agent")),
                action="admin.signed_out",
                entity_type="staff",
                entity_id=resolved.staff.id,
            )
    response = redirect(request, "/admin/login")
    response.delete_cookie(ADMIN_COOKIE, path="/")
    return response


# --- the staff member's own account ----------------------------------------------------------------------------


async def _account_page(
    request: Request,
    db: DbSession,
    settings: Settings,
    viewer: StaffViewer,
    toasts: list[tuple[str, str]] | None = None,
) -> Response:
    sessions = await list_sessions(db, viewer.staff.id)
    context = {
        "section": "account",
        "me": viewer.staff,
        "sessions": sessions,
        "current_session_id": viewer.session.id if viewer.session else None,
        "needs_2fa": must_use_2fa(viewer.staff, require_2fa=settings.admin_require_2fa),
    }
    return render(request, "admin/auth/account.html", context, toasts=toasts)


@account_router.get("/account", response_class=HTMLResponse)
async def account(
    request: Request, db: DbSession, settings: AppSettings, viewer: Annotated[StaffViewer, require("account:self")]
) -> Response:
    return await _account_page(request, db, settings, viewer)


@account_router.post("/account/2fa", response_class=HTMLResponse)
async def account_2fa_start(
    request: Request, settings: AppSettings, viewer: Annotated[StaffViewer, require("account:self")]
) -> Response:
    return _enrol_page(request, settings, viewer.staff, next_url="/admin/account", action="/admin/account/2fa/confirm")


@account_router.post("/account/2fa/confirm", response_model=None)
async def account_2fa_confirm(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    viewer: Annotated[StaffViewer, require("account:self")],
    ticket: Annotated[str, Form(max_length=256)] = "",
    secret: Annotated[str, Form(max_length=64)] = "",
    otp: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    if totp.check_ticket(ticket, secret, settings.secret_key) != viewer.staff.id:
        raise CsrfFailed("The enrolment form has expired; start again.")
    before = {"totp": viewer.staff.totp_secret is not None}
    staff = await _confirm_enrolment(db, settings, ticket, secret, otp)
    if staff is None:
        return _enrol_page(
            request,
            settings,
            viewer.staff,
            next_url="/admin/account",
            secret=secret,
            status=422,
            action="/admin/account/2fa/confirm",
            error="The code does not match; enter the current code from the app.",
        )
    record_by(
        db,
        viewer.actor,
        action="staff.2fa_enrolled",
        entity_type="staff",
        entity_id=staff.id,
        before=before,
        after={"totp": True},
    )
    return await _account_page(
        request, db, settings, viewer, toasts=[("success", translate(request, "admin.account.toast.2fa_on"))]
    )


@account_router.post("/account/sessions/{session_id}/revoke", response_model=None)
async def account_revoke_session(
    request: Request,
    session_id: RowId,
    db: DbSession,
    settings: AppSettings,
    viewer: Annotated[StaffViewer, require("account:self")],
) -> Response:
    if not await revoke_session(db, viewer.staff.id, session_id):
        raise NotFound("No such session of yours.")
    record_by(db, viewer.actor, action="staff.session_revoked", entity_type="staff_session", entity_id=session_id)
    return await _account_page(request, db, settings, viewer)
