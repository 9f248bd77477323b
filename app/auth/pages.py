"""Browser sign-in (SPEC §3.9): the login page, one-time links and codes, the Telegram Login Widget, OpenID
Connect providers, the demo's one-click customer, and sign-out. Every way in ends in `_signed_in`, which opens
a revocable session and sets the cookie."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from app.audit import service as audit
from app.auth.dependencies import CsrfFailed, CurrentViewer, ensure_not_blocked
from app.auth.login_codes import LoginCodeInvalid, redeem
from app.auth.sessions import SESSION_COOKIE, revoke_session, start_session
from app.auth.telegram_widget import WidgetLoginInvalid, verify_widget_login
from app.config import Settings
from app.deps import AppSettings, DbSession, client_ip
from app.kit.clock import utcnow
from app.kit.errors import AppError, NotFound, RateLimited
from app.models import User
from app.users.service import upsert_from_telegram

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "vpnshop_login_csrf"
CODE_ATTEMPTS_PER_IP = 10
CODE_ATTEMPT_WINDOW = 600


def safe_next(value: str | None) -> str:
    """Only a path on this site: an open redirect after sign-in would hand the session to a phishing page."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/app"


def secure_cookies(settings: Settings) -> bool:
    return settings.public_base_url.startswith("https://")


def login_csrf(request: Request) -> str:
    """The double-submit token of the sign-in forms (posted before any session exists, so another site must
    not be able to sign the visitor into the attacker's account)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def set_login_csrf(response: Response, token: str, settings: Settings) -> Response:
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="lax", secure=secure_cookies(settings), path="/"
    )
    return response


def _login_page(
    request: Request, settings: Settings, *, next_url: str, error: AppError | None = None, status: int = 200
) -> HTMLResponse:
    token = login_csrf(request)
    context = {
        "next_url": next_url,
        "error": error,
        "login_csrf": token,
        "providers": list(request.app.state.oidc_providers.values()),
        "widget_bot": settings.bot_username if settings.bot_username and settings.bot_token else "",
    }
    response = request.app.state.templates.response(request, "auth/login.html", context, status_code=status)
    set_login_csrf(response, token, settings)
    return response


def login_page_with_error(request: Request, settings: Settings, error: AppError, *, next_url: str) -> HTMLResponse:
    return _login_page(request, settings, next_url=next_url, error=error, status=error.status_code)


def _check_login_csrf(request: Request, submitted: str) -> None:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected, submitted):
        raise CsrfFailed()


async def signed_in(
    request: Request, db: DbSession, settings: Settings, user: User, *, method: str, next_url: str = "/app"
) -> Response:
    """Open a browser session for `user` and send them on; blocked users are told why instead."""
    ensure_not_blocked(user)
    token = await start_session(
        db,
        user,
        ttl=timedelta(days=settings.session_ttl_days),
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )
    audit.record(
        db,
        actor_type="user",
        actor_id=user.id,
        action="session.started",
        entity_type="user",
        entity_id=user.id,
        after={"method": method},
        ip=client_ip(request),
    )
    response = RedirectResponse(safe_next(next_url), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_days * 86400,
        httponly=True,
        secure=secure_cookies(settings),
        samesite="lax",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, settings: AppSettings, next: str | None = None) -> HTMLResponse:
    return _login_page(request, settings, next_url=safe_next(next))


@router.get("/login/link/{token}", response_model=None)
async def login_by_link(request: Request, token: str, db: DbSession, settings: AppSettings) -> Response:
    try:
        user = await redeem(db, "link", token, secret_key=settings.secret_key)
    except LoginCodeInvalid as exc:
        return _login_page(request, settings, next_url="/app", error=exc, status=exc.status_code)
    return await signed_in(request, db, settings, user, method="link")


@router.post("/login/code", response_model=None)
async def login_by_code(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    code: Annotated[str, Form(max_length=32)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/app",
) -> Response:
    _check_login_csrf(request, csrf_token)
    # Per address, so guessing codes is hopeless: 10 tries per 10 minutes against 31^8 possible codes.
    decision = await request.app.state.resources.rate_limiter.hit(
        f"login-code:{client_ip(request)}", CODE_ATTEMPTS_PER_IP, CODE_ATTEMPT_WINDOW
    )
    if not decision.allowed:
        raise RateLimited("Too many sign-in attempts; wait a few minutes.", retry_after=decision.retry_after)
    try:
        user = await redeem(db, "code", code, secret_key=settings.secret_key)
    except LoginCodeInvalid as exc:
        return _login_page(request, settings, next_url=safe_next(next), error=exc, status=exc.status_code)
    return await signed_in(request, db, settings, user, method="code", next_url=next)


@router.get("/auth/telegram/widget", response_model=None)
async def login_by_widget(request: Request, db: DbSession, settings: AppSettings) -> Response:
    try:
        tg_user = verify_widget_login(
            request.query_params, settings.bot_token, max_age_seconds=settings.init_data_max_age_seconds, now=utcnow()
        )
    except WidgetLoginInvalid as exc:
        return _login_page(request, settings, next_url="/app", error=exc, status=exc.status_code)
    user = await upsert_from_telegram(db, tg_user, default_language=settings.default_language)
    return await signed_in(request, db, settings, user, method="telegram_widget")


@router.post("/login/demo", response_model=None)
async def login_demo_customer(
    request: Request, db: DbSession, settings: AppSettings, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """The embedded demo's one-click sign-in as its demo customer; does not exist outside demo mode."""
    if not settings.demo_mode:
        raise NotFound()
    _check_login_csrf(request, csrf_token)
    user = await db.scalar(select(User).where(User.is_demo).order_by(User.id).limit(1))
    if user is None:
        raise NotFound("The demo customer has not been created; run `vpnshop demo`.")
    return await signed_in(request, db, settings, user, method="demo")


@router.post("/logout", response_model=None)
async def logout(request: Request, viewer: CurrentViewer, db: DbSession) -> Response:
    if viewer.session is not None:
        await revoke_session(db, viewer.user.id, viewer.session.record.id)
    response = RedirectResponse("/login", status_code=303)
    if request.headers.get("hx-request") == "true":
        response = Response(status_code=204, headers={"HX-Redirect": "/login"})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
