"""OpenID Connect sign-in and account linking for the browser cabinet. Signing in works only for accounts
linked beforehand (from Settings, while signed in with a login code), except "Log in with Telegram", whose
numeric Telegram id identifies the customer directly."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import oidc
from app.auth.pages import login_page_with_error, safe_next, secure_cookies, signed_in
from app.auth.sessions import SESSION_COOKIE, resolve_session
from app.config import Settings
from app.deps import AppSettings, DbSession, client_ip
from app.kit.clock import utcnow
from app.kit.errors import AppError, NotFound
from app.models import User, UserIdentity
from app.users import preferences

router = APIRouter(include_in_schema=False)

STATE_COOKIE = "vpnshop_oidc"
NEXT_COOKIE = "vpnshop_oidc_next"


class IdentityNotLinked(AppError):
    """This account is not linked to any customer yet."""

    status_code = 401
    code = "identity_not_linked"


def _provider(request: Request, name: str) -> oidc.OidcProvider:
    provider = request.app.state.oidc_providers.get(name)
    if provider is None:
        raise NotFound("Unknown sign-in provider.")
    return provider


def _callback_path(name: str) -> str:
    return f"/auth/oidc/{name}/callback"


async def _session_user(request: Request, db: AsyncSession) -> User | None:
    token = request.cookies.get(SESSION_COOKIE)
    active = await resolve_session(db, token) if token else None
    return active.user if active else None


@router.get("/auth/oidc/{name}/start")
async def start(
    request: Request, name: str, db: DbSession, settings: AppSettings, next: str | None = None, intent: str = "login"
) -> Response:
    provider = _provider(request, name)
    if intent not in {"login", "link"}:
        raise NotFound("Unknown sign-in intent.")
    if intent == "link" and await _session_user(request, db) is None:
        return RedirectResponse("/login?next=/app/settings", status_code=303)
    url, sealed = await oidc.begin(
        provider, settings.public_base_url + _callback_path(name), intent=intent, now=utcnow()
    )
    response = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the provider sends the visitor back with a cross-site top-level GET.
    cookie = {"httponly": True, "secure": secure_cookies(settings), "samesite": "lax", "path": _callback_path(name)}
    response.set_cookie(STATE_COOKIE, sealed, max_age=int(oidc.STATE_TTL.total_seconds()), **cookie)
    response.set_cookie(NEXT_COOKIE, safe_next(next), max_age=int(oidc.STATE_TTL.total_seconds()), **cookie)
    return response


async def _customer_for(db: AsyncSession, claims: oidc.OidcClaims) -> User:
    identity = await db.scalar(
        select(UserIdentity).where(UserIdentity.provider == claims.provider, UserIdentity.subject == claims.subject)
    )
    if identity is not None:
        identity.last_used_at = utcnow()
        user = await db.get(User, identity.user_id)
        if user is not None:
            return user
    if claims.telegram_id is not None:
        user = await db.scalar(select(User).where(User.telegram_id == claims.telegram_id))
        if user is not None:
            await preferences.link_identity(
                db, user, provider=claims.provider, subject=claims.subject, email=claims.email
            )
            return user
    raise IdentityNotLinked()


@router.get("/auth/oidc/{name}/callback")
async def callback(request: Request, name: str, db: DbSession, settings: AppSettings) -> Response:
    provider = _provider(request, name)
    next_url = safe_next(request.cookies.get(NEXT_COOKIE))
    try:
        claims = await oidc.finish(
            provider,
            params=request.query_params,
            sealed_state=request.cookies.get(STATE_COOKIE, ""),
            redirect_uri=settings.public_base_url + _callback_path(name),
            now=utcnow(),
        )
        if claims.intent == "link":
            user = await _session_user(request, db)
            if user is None:
                raise IdentityNotLinked("Sign in first, then link the account from Settings.")
            await preferences.link_identity(
                db,
                user,
                provider=claims.provider,
                subject=claims.subject,
                email=claims.email,
                ip=client_ip(request),
            )
            response: Response = RedirectResponse("/app/settings", status_code=303)
        else:
            user = await _customer_for(db, claims)
            response = await signed_in(request, db, settings, user, method=f"oidc:{name}", next_url=next_url)
    except (oidc.OidcError, IdentityNotLinked) as exc:
        response = login_page_with_error(request, settings, exc, next_url=next_url)
    for cookie in (STATE_COOKIE, NEXT_COOKIE):
        response.delete_cookie(cookie, path=_callback_path(name))
    return response


def load_providers(settings: Settings) -> dict[str, oidc.OidcProvider]:
    """Parsed at start-up, so a mistyped OIDC_PROVIDERS fails the deploy instead of the first sign-in."""
    return oidc.providers_from_settings(settings)
