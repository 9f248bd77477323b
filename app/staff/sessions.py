"""Admin browser sessions and API tokens. Both keep only a SHA-256 of the random token (a leaked database cannot
be replayed), both can be listed and revoked, and deactivating a staff member revokes all of them at once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit import crypto
from app.kit.clock import utcnow
from app.kit.crypto import token_hash
from app.models import ApiToken, Staff, StaffSession

ADMIN_COOKIE = "vpnshop_admin"
# A session ends after this long even when used all the time; the idle timeout is a setting.
SESSION_LIFETIME = timedelta(hours=12)
# last_seen_at is written at most this often, so browsing does not write a row per request.
SEEN_RESOLUTION = timedelta(minutes=1)
ACCESS_TOKEN_TTL = timedelta(minutes=15)
REFRESH_TOKEN_TTL = timedelta(days=30)


def csrf_token(session_token: str, secret_key: str) -> str:
    """The admin's CSRF token: its own label, so the customers' tokens never fit the admin."""
    return crypto.csrf_token(session_token, secret_key, label=b"admin-csrf:")


def csrf_valid(submitted: str | None, session_token: str, secret_key: str) -> bool:
    return crypto.csrf_valid(submitted, session_token, secret_key, label=b"admin-csrf:")


async def start_session(db: AsyncSession, staff: Staff, *, method: str, user_agent: str | None, ip: str | None) -> str:
    """Open an admin session; returns the cookie's token (never stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        StaffSession(
            staff_id=staff.id,
            token_hash=token_hash(token),
            method=method,
            user_agent=(user_agent or "")[:512] or None,
            ip=ip,
            last_seen_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    staff.last_login_at = now
    await db.flush()
    return token


@dataclass(slots=True)
class ResolvedSession:
    record: StaffSession
    staff: Staff


async def resolve_session(db: AsyncSession, token: str, *, idle_timeout: timedelta) -> ResolvedSession | None:
    """The live session behind a cookie and its active staff member; None if unknown, idle too long, expired,
    revoked, or the staff member was deactivated."""
    now = utcnow()
    row = (
        await db.execute(
            select(StaffSession, Staff)
            .join(Staff, Staff.id == StaffSession.staff_id)
            .where(
                StaffSession.token_hash == token_hash(token),
                StaffSession.revoked_at.is_(None),
                StaffSession.expires_at > now,
                StaffSession.last_seen_at > now - idle_timeout,
                Staff.is_active,
            )
        )
    ).first()
    if row is None:
        return None
    record, staff = row
    if now - record.last_seen_at > SEEN_RESOLUTION:
        record.last_seen_at = now
    return ResolvedSession(record, staff)


async def list_sessions(db: AsyncSession, staff_id: int) -> list[StaffSession]:
    now = utcnow()
    rows = await db.scalars(
        select(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.revoked_at.is_(None), StaffSession.expires_at > now)
        .order_by(StaffSession.last_seen_at.desc())
    )
    return list(rows)


async def revoke_session(db: AsyncSession, staff_id: int, session_id: int) -> bool:
    """Revoke one session of `staff_id`; False if it is not theirs or already revoked."""
    result = await db.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id, StaffSession.staff_id == staff_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount == 1


async def revoke_everything(db: AsyncSession, staff_id: int) -> int:
    """Every session and API token of a staff member (deactivation, API logout, a reused refresh token)."""
    now = utcnow()
    sessions = await db.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    tokens = await db.execute(
        update(ApiToken).where(ApiToken.staff_id == staff_id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    return sessions.rowcount + tokens.rowcount


# --- API tokens ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


async def issue_tokens(db: AsyncSession, staff: Staff, *, name: str | None = None) -> TokenPair:
    now = utcnow()
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    db.add_all(
        [
            ApiToken(
                staff_id=staff.id,
                token_hash=token_hash(access),
                kind="access",
                name=name,
                expires_at=now + ACCESS_TOKEN_TTL,
            ),
            ApiToken(
                staff_id=staff.id,
                token_hash=token_hash(refresh),
                kind="refresh",
                name=name,
                expires_at=now + REFRESH_TOKEN_TTL,
            ),
        ]
    )
    staff.last_login_at = now
    await db.flush()
    return TokenPair(access, refresh, int(ACCESS_TOKEN_TTL.total_seconds()))


async def staff_by_token(db: AsyncSession, token: str, kind: str) -> tuple[ApiToken, Staff] | None:
    """A live token of `kind` and its active owner; None otherwise."""
    row = (
        await db.execute(
            select(ApiToken, Staff)
            .join(Staff, Staff.id == ApiToken.staff_id)
            .where(
                ApiToken.token_hash == token_hash(token),
                ApiToken.kind == kind,
                ApiToken.revoked_at.is_(None),
                ApiToken.expires_at > utcnow(),
                Staff.is_active,
            )
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def revoked_refresh_owner(db: AsyncSession, token: str) -> int | None:
    """The staff id behind a refresh token that was already used or revoked: presenting it again means it
    leaked (rotation hands out a new one each time), so the caller revokes everything."""
    return await db.scalar(
        select(ApiToken.staff_id).where(
            ApiToken.token_hash == token_hash(token), ApiToken.kind == "refresh", ApiToken.revoked_at.is_not(None)
        )
    )


async def rotate_refresh(db: AsyncSession, token: str) -> TokenPair | None:
    """Exchange a refresh token for a new pair; the old refresh token stops working at once. The UPDATE's
    WHERE makes two concurrent refreshes with one token yield one pair, not two."""
    found = await staff_by_token(db, token, "refresh")
    if found is None:
        return None
    record, staff = found
    claimed = await db.execute(
        update(ApiToken).where(ApiToken.id == record.id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    if claimed.rowcount != 1:
        return None
    return await issue_tokens(db, staff, name=record.name)
