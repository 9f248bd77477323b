"""Browser-cabinet sessions (SPEC §3.9): the cookie carries a random token, the database only its hash, so a
leaked database cannot be replayed and every session can be listed and revoked. CSRF tokens are derived from the
session token, so they need no storage and die with the session."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit import crypto
from app.kit.clock import utcnow
from app.kit.crypto import token_hash
from app.models import BrowserSession, User
from app.users.service import SEEN_RESOLUTION

SESSION_COOKIE = "vpnshop_session"


def csrf_token(session_token: str, secret_key: str) -> str:
    """The customers' CSRF token for a browser session."""
    return crypto.csrf_token(session_token, secret_key, label=b"csrf:")


def csrf_valid(submitted: str | None, session_token: str, secret_key: str) -> bool:
    return crypto.csrf_valid(submitted, session_token, secret_key, label=b"csrf:")


async def start_session(
    session: AsyncSession, user: User, *, ttl: timedelta, user_agent: str | None, ip: str | None
) -> str:
    """Open a browser session for `user`; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        BrowserSession(
            user_id=user.id,
            token_hash=token_hash(token),
            user_agent=(user_agent or "")[:512] or None,
            ip=ip,
            last_seen_at=now,
            expires_at=now + ttl,
        )
    )
    await session.flush()
    return token


@dataclass(slots=True)
class ActiveSession:
    record: BrowserSession
    user: User


async def resolve_session(session: AsyncSession, token: str) -> ActiveSession | None:
    """The live session behind a cookie token and its user, in one query; None if unknown, expired or revoked."""
    now = utcnow()
    row = (
        await session.execute(
            select(BrowserSession, User)
            .join(User, User.id == BrowserSession.user_id)
            .where(
                BrowserSession.token_hash == token_hash(token),
                BrowserSession.revoked_at.is_(None),
                BrowserSession.expires_at > now,
            )
        )
    ).first()
    if row is None:
        return None
    record, user = row
    if record.last_seen_at is None or now - record.last_seen_at > SEEN_RESOLUTION:
        record.last_seen_at = now
    return ActiveSession(record, user)


async def list_sessions(session: AsyncSession, user_id: int) -> list[BrowserSession]:
    now = utcnow()
    rows = await session.scalars(
        select(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.revoked_at.is_(None), BrowserSession.expires_at > now)
        .order_by(BrowserSession.last_seen_at.desc())
    )
    return list(rows)


async def revoke_session(session: AsyncSession, user_id: int, session_id: int, *, now: datetime | None = None) -> bool:
    """Revoke one of the user's own sessions; False if it is not theirs or already gone."""
    result = await session.execute(
        update(BrowserSession)
        .where(
            BrowserSession.id == session_id,
            BrowserSession.user_id == user_id,
            BrowserSession.revoked_at.is_(None),
        )
        .values(revoked_at=now or utcnow())
    )
    return result.rowcount == 1
