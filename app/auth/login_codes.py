"""One-time sign-in for the browser cabinet, issued from the Mini App (or the bot): a link and a short code,
single use, valid for 10 minutes, bound to one user. Issuing a new pair retires the previous one, and using
either retires both, so at most one way in is ever open per user."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import utcnow
from app.kit.errors import NotAuthenticated
from app.models import LoginCode, User

LOGIN_TTL = timedelta(minutes=10)
# No 0/O, 1/I/L: the code is read from one screen and typed into another.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
_CODE_INPUT = re.compile(r"[\s-]+")


class LoginCodeInvalid(NotAuthenticated):
    """This sign-in link or code is not valid: it may have expired (10 minutes) or been used already."""

    code = "login_code_invalid"


@dataclass(frozen=True, slots=True)
class IssuedLogin:
    link_token: str
    code: str
    expires_at: datetime

    @property
    def display_code(self) -> str:
        return f"{self.code[:4]}-{self.code[4:]}"


def _hash(kind: str, value: str, secret_key: str) -> str:
    # Keyed, so a leaked table does not let anyone brute-force the short codes offline.
    return hmac.new(secret_key.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def normalize_code(raw: str) -> str:
    return _CODE_INPUT.sub("", raw).upper()


async def issue_login(session: AsyncSession, user: User, *, secret_key: str) -> IssuedLogin:
    """A fresh link token and code for `user`; any earlier unused ones stop working."""
    now = utcnow()
    await _retire_unused(session, user.id, now)
    link_token = secrets.token_urlsafe(32)
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    expires_at = now + LOGIN_TTL
    for kind, value in (("link", link_token), ("code", code)):
        session.add(
            LoginCode(user_id=user.id, kind=kind, code_hash=_hash(kind, value, secret_key), expires_at=expires_at)
        )
    await session.flush()
    return IssuedLogin(link_token, code, expires_at)


async def redeem(session: AsyncSession, kind: str, value: str, *, secret_key: str) -> User:
    """The user a link token or code signs in, consuming it; raises LoginCodeInvalid otherwise.

    The conditional UPDATE is the single-use guarantee: of two concurrent redemptions only one matches
    `used_at IS NULL`."""
    if kind == "code":
        value = normalize_code(value)
    if not value or len(value) > 128:
        raise LoginCodeInvalid()
    now = utcnow()
    row = await session.execute(
        update(LoginCode)
        .where(
            LoginCode.code_hash == _hash(kind, value, secret_key),
            LoginCode.kind == kind,
            LoginCode.used_at.is_(None),
            LoginCode.expires_at > now,
        )
        .values(used_at=now)
        .returning(LoginCode.user_id)
    )
    user_id = row.scalar_one_or_none()
    if user_id is None:
        raise LoginCodeInvalid()
    await _retire_unused(session, user_id, now)
    user = await session.scalar(select(User).where(User.id == user_id))
    if user is None:
        raise LoginCodeInvalid()
    return user


async def _retire_unused(session: AsyncSession, user_id: int, now: datetime) -> None:
    await session.execute(
        update(LoginCode).where(LoginCode.user_id == user_id, LoginCode.used_at.is_(None)).values(used_at=now)
    )
