"""Who is asking: inside Telegram, `Authorization: tma <initData>` on every request (WebView cookies are
unreliable); blocked users are refused with their reason."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth.telegram import InitDataInvalid, verify_init_data
from app.deps import AppSettings, DbSession
from app.kit.clock import utcnow
from app.kit.errors import Forbidden, NotAuthenticated
from app.models import User
from app.users.service import upsert_from_telegram


class UserBlocked(Forbidden):
    code = "user_blocked"


async def _current_user(request: Request, session: DbSession, settings: AppSettings) -> User:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "tma" or not credentials:
        raise NotAuthenticated("Open the app from Telegram, or sign in in the browser.")
    if not settings.bot_token:
        raise InitDataInvalid("Telegram sign-in is not configured on this server (BOT_TOKEN).")
    data = verify_init_data(
        credentials, settings.bot_token, max_age_seconds=settings.init_data_max_age_seconds, now=utcnow()
    )
    user = await upsert_from_telegram(
        session, data.user, start_param=data.start_param, default_language=settings.default_language
    )
    if user.is_blocked:
        raise UserBlocked(f"Your account is blocked: {user.block_reason or 'contact support'}")
    request.state.language = user.language
    return user


CurrentUser = Annotated[User, Depends(_current_user)]
