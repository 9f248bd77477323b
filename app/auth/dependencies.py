"""Who is asking. Inside Telegram: `Authorization: tma <initData>` on every request (WebView cookies are
unreliable). In a browser: the session cookie, with a CSRF token on every state-changing request. Pages and the
JSON API use the same dependency, so they can never disagree about who is signed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.sessions import SESSION_COOKIE, ActiveSession, csrf_token, csrf_valid, resolve_session
from app.auth.telegram import InitDataExpired, InitDataInvalid, verify_init_data
from app.config import Settings
from app.deps import AppSettings, DbSession
from app.experiments import texts as experiment_texts
from app.kit.clock import utcnow
from app.kit.errors import Forbidden, NotAuthenticated, ShellRequired
from app.kit.i18n import pick_language
from app.models import User
from app.throttle import count_the_address, counts_the_address, limit_per_user
from app.users.service import mark_seen, upsert_from_telegram

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class UserBlocked(Forbidden):
    code = "user_blocked"


def ensure_not_blocked(user: User) -> None:
    """Every way in refuses a blocked customer, and tells them why."""
    if user.is_blocked:
        raise UserBlocked(f"Your account is blocked: {user.block_reason or 'contact support'}")


class CsrfFailed(Forbidden):
    """The form is out of date or did not come from this site; reload the page and try again."""

    code = "csrf_failed"


@dataclass(slots=True)
class Viewer:
    user: User
    via: Literal["telegram", "session"]
    session: ActiveSession | None = None


async def _from_telegram(request: Request, credentials: str, db: DbSession, settings: AppSettings) -> Viewer:
    if not settings.bot_token:
        raise InitDataInvalid("Telegram sign-in is not configured on this server (BOT_TOKEN).")
    try:
        data = verify_init_data(
            credentials, settings.bot_token, max_age_seconds=settings.init_data_max_age_seconds, now=utcnow()
        )
    except InitDataExpired as expired:  # "reopen the app" in the customer's own language
        request.state.language = pick_language(expired.language_code, settings.default_language)
        raise
    user = await upsert_from_telegram(
        db, data.user, start_param=data.start_param, default_language=settings.default_language
    )
    return Viewer(user, "telegram")


async def _check_csrf(request: Request, token: str, secret_key: str) -> None:
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        submitted = (await request.form()).get(CSRF_FIELD)  # type: ignore[assignment]
    if not csrf_valid(submitted if isinstance(submitted, str) else None, token, secret_key):
        raise CsrfFailed()


@counts_the_address
async def _viewer(request: Request, db: DbSession, settings: AppSettings) -> Viewer:
    try:
        viewer = await _signed_in(request, db, settings)
        ensure_not_blocked(viewer.user)
    except Exception:
        await count_the_address(request)  # refused by its address first, as any request
        raise
    await limit_per_user(request, viewer.user.id)  # with the address's hit: one round trip
    request.state.language = viewer.user.language
    request.state.viewer = viewer
    request.state.experiment_texts = experiment_texts.use_for(request.app.state.resources.sessionmaker, viewer.user)
    return viewer


async def _signed_in(request: Request, db: AsyncSession, settings: Settings) -> Viewer:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    cookie = request.cookies.get(SESSION_COOKIE)
    if scheme.lower() == "tma" and credentials:
        return await _from_telegram(request, credentials, db, settings)
    if cookie and (active := await resolve_session(db, cookie)) is not None:
        await _check_csrf(request, cookie, settings.secret_key)
        # Telegram sign-ins are marked seen when their user is refreshed; a cookie session is marked here.
        await mark_seen(db, active.user, utcnow())
        request.state.csrf_token = csrf_token(cookie, settings.secret_key)
        return Viewer(active.user, "session", active)
    raise NotAuthenticated("Open the app from Telegram, or sign in in the browser.")


@counts_the_address
async def _page_viewer(request: Request, db: DbSession, settings: AppSettings) -> Viewer:
    """Like _viewer, but a plain page load that cannot be authenticated (no credentials, or an expired cookie)
    gets the shell instead of a 401."""
    plain_load = (
        request.method == "GET"
        and request.headers.get("hx-request") != "true"
        and "authorization" not in request.headers
    )
    try:
        return await _viewer(request, db, settings)
    except NotAuthenticated:
        if plain_load:
            raise ShellRequired() from None
        raise


async def _current_user(viewer: Annotated[Viewer, Depends(_viewer)]) -> User:
    return viewer.user


CurrentViewer = Annotated[Viewer, Depends(_viewer)]
PageViewer = Annotated[Viewer, Depends(_page_viewer)]
CurrentUser = Annotated[User, Depends(_current_user)]
