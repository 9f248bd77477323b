"""Who is asking in the admin, and may they. Three ways in, one dependency:
- `Authorization: Bearer <access token>` (the JSON API; no CSRF needed, nothing ambient);
- `Authorization: tma <initData>` inside Telegram: a staff member whose linked Telegram id signed the initData
  (WebView cookies are unreliable, so every request carries it, as in the customers' Mini App);
- the admin's own session cookie in a browser, with a CSRF token on every state-changing request.

The admin routers (app/admin/routes.py) depend on `authenticated_staff`, so no admin route can forget it; each
route also declares exactly one permission with `require("section:action")`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from app.audit.service import Actor, record
from app.auth.dependencies import CSRF_FIELD, CSRF_HEADER, SAFE_METHODS, CsrfFailed
from app.auth.telegram import InitDataInvalid, verify_init_data
from app.deps import AppSettings, DbSession, client_ip
from app.kit.clock import utcnow
from app.kit.errors import Forbidden, NotAuthenticated
from app.kit.i18n import ADMIN_LANGUAGES, pick_language
from app.models import Staff, StaffSession
from app.staff.permissions import PERMISSIONS, permissions_of
from app.staff.sessions import ADMIN_COOKIE, csrf_token, csrf_valid, resolve_session, staff_by_token

log = logging.getLogger("vpnshop.admin")

# OpenAPI's "Authorize" button and docs page use this scheme; auto_error off because a page load may come with
# a cookie or initData instead.
bearer_scheme = HTTPBearer(auto_error=False, description="An access token from POST /api/auth/login")


class StaffNotAuthenticated(NotAuthenticated):
    """Sign in to the admin."""

    code = "staff_not_authenticated"


class PermissionDenied(Forbidden):
    """Your staff role does not allow this."""

    code = "permission_denied"


class TelegramNotLinked(Forbidden):
    """This Telegram account is not linked to an active staff account."""

    code = "staff_not_linked"


class AdminShellRequired(Exception):
    """A first page load without credentials: inside Telegram only JavaScript can attach initData, so the
    answer is a shell that fetches the page again with it (or, in a plain browser, goes to /admin/login)."""


@dataclass(slots=True)
class StaffViewer:
    """The signed-in staff member of one request, their effective permissions and how they came in."""

    staff: Staff
    permissions: frozenset[str]
    via: Literal["session", "bearer", "telegram"]
    ip: str | None = None
    user_agent: str | None = None
    session: StaffSession | None = field(default=None, repr=False)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def actor(self) -> Actor:
        """What domain services take to write their audit rows."""
        return Actor("staff", self.staff.id, self.ip, self.user_agent)


async def audit_denied(request: Request, reason: str, *, staff_id: int | None = None, **details: Any) -> None:
    """A refused attempt, logged and audited in a transaction of its own: the request's own transaction is
    rolled back by the error that follows, and the trail of refusals must survive it."""
    ip, path = client_ip(request), request.url.path
    log.warning("admin access denied: %s staff=%s ip=%s %s %s", reason, staff_id, ip, request.method, path)
    async with request.app.state.resources.sessionmaker() as db:
        record(
            db,
            actor_type="staff" if staff_id else "anonymous",
            actor_id=staff_id,
            action="admin.denied",
            entity_type="staff",
            entity_id=staff_id,
            after={"reason": reason, "method": request.method, "path": path, **details},
            ip=ip,
            user_agent=request.headers.get("user-agent"),
        )
        await db.commit()


async def _check_csrf(request: Request, cookie: str, secret_key: str) -> None:
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    if not csrf_valid(submitted, cookie, secret_key):
        raise CsrfFailed()


async def _from_telegram(request: Request, raw: str, db: DbSession, settings: AppSettings) -> Staff:
    if not settings.bot_token:
        raise InitDataInvalid("Telegram sign-in is not configured on this server (BOT_TOKEN).")
    data = verify_init_data(raw, settings.bot_token, max_age_seconds=settings.init_data_max_age_seconds, now=utcnow())
    staff = await db.scalar(select(Staff).where(Staff.telegram_id == data.user.id, Staff.is_active))
    if staff is None:
        await audit_denied(request, "telegram_not_linked", telegram_id=data.user.id)
        raise TelegramNotLinked()
    request.state.language = pick_language(data.user.language_code, settings.default_language, among=ADMIN_LANGUAGES)
    now = utcnow()
    if staff.last_login_at is None or now - staff.last_login_at > timedelta(hours=1):
        staff.last_login_at = now
    return staff


async def _authenticate(
    request: Request, db: DbSession, settings: AppSettings, bearer: HTTPAuthorizationCredentials | None
) -> StaffViewer:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    ip, agent = client_ip(request), request.headers.get("user-agent")
    if bearer is not None:
        found = await staff_by_token(db, bearer.credentials, "access")
        if found is None:
            raise StaffNotAuthenticated("The access token is unknown, expired or revoked.")
        return StaffViewer(found[1], permissions_of(found[1]), "bearer", ip, agent)
    if scheme.lower() == "tma" and credentials:
        staff = await _from_telegram(request, credentials, db, settings)
        return StaffViewer(staff, permissions_of(staff), "telegram", ip, agent)
    cookie = request.cookies.get(ADMIN_COOKIE)
    if cookie:
        idle = timedelta(minutes=settings.admin_idle_timeout_minutes)
        resolved = await resolve_session(db, cookie, idle_timeout=idle)
        if resolved is not None:
            await _check_csrf(request, cookie, settings.secret_key)
            request.state.csrf_token = csrf_token(cookie, settings.secret_key)
            staff = resolved.staff
            return StaffViewer(staff, permissions_of(staff), "session", ip, agent, resolved.record)
    raise StaffNotAuthenticated()


async def authenticated_staff(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> StaffViewer:
    """The router-level dependency of every admin route. A plain page load without credentials gets the shell
    (which signs in by initData inside Telegram, or goes to /admin/login); anything else gets a 401."""
    try:
        viewer = await _authenticate(request, db, settings, bearer)
    except NotAuthenticated:
        plain_page_load = (
            request.method == "GET"
            and request.url.path.startswith("/admin")
            and request.headers.get("hx-request") != "true"
            and "authorization" not in request.headers
        )
        if plain_page_load:
            raise AdminShellRequired() from None
        raise
    request.state.staff_viewer = viewer
    return viewer


def require(permission: str) -> Any:
    """The permission a route needs, as a dependency that also yields the StaffViewer:
    `dependencies=[require("users:read")]` or `viewer: Annotated[StaffViewer, require("users:write")]`.
    The checker carries `.permission`, which the permission-matrix test reads from the route table."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}; add it to app/admin/permissions.py")

    async def check(request: Request, viewer: Annotated[StaffViewer, Depends(authenticated_staff)]) -> StaffViewer:
        if not viewer.can(permission):
            await audit_denied(request, "permission", staff_id=viewer.staff.id, permission=permission)
            raise PermissionDenied(f"Your role does not allow this ({permission}).")
        return viewer

    check.permission = permission  # type: ignore[attr-defined]
    check.__name__ = f"require_{permission.replace(':', '_')}"
    return Depends(check)


CurrentStaff = Annotated[StaffViewer, Depends(authenticated_staff)]
