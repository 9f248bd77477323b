"""Users: created or refreshed from verified Telegram data; referral recorded once, never to oneself."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.telegram import TelegramUser
from app.db import insert_for
from app.kit.clock import utcnow
from app.kit.i18n import pick_language
from app.models import AuditLog, User
from app.stats.activity import is_new_day, record_active_day

REFERRAL_PREFIX = "ref_"
SELF_REFERRAL = "referral.self_attempt"
# last_seen_at is refreshed at most this often, so reading a page does not write on every request.
SEEN_RESOLUTION = timedelta(minutes=5)


def new_referral_code() -> str:
    return secrets.token_urlsafe(6).replace("-", "x").replace("_", "y").lower()


async def _referrer_id(session: AsyncSession, start_param: str | None) -> int | None:
    if not start_param or not start_param.startswith(REFERRAL_PREFIX):
        return None
    code = start_param.removeprefix(REFERRAL_PREFIX)
    return await session.scalar(select(User.id).where(User.referral_code == code))


# Built once: every request signed in from Telegram asks it.
_BY_TELEGRAM_ID = select(User).where(User.telegram_id == bindparam("telegram_id"))


async def upsert_from_telegram(
    session: AsyncSession, tg: TelegramUser, *, start_param: str | None = None, default_language: str = "ru"
) -> User:
    """The user for a verified Telegram identity: created on first sight, names kept current."""
    user = await session.scalar(_BY_TELEGRAM_ID, {"telegram_id": tg.id})
    now = utcnow()
    if user is None:
        return await _create(session, tg, start_param=start_param, default_language=default_language, now=now)
    if start_param == f"{REFERRAL_PREFIX}{user.referral_code}":
        await _record_self_referral(session, user)
    if (user.username, user.first_name, user.last_name) != (tg.username, tg.first_name, tg.last_name):
        user.username, user.first_name, user.last_name = tg.username, tg.first_name, tg.last_name
    await mark_seen(session, user, now)
    return user


async def _record_self_referral(session: AsyncSession, user: User) -> None:
    """A customer came in through their own invitation link: nothing is granted (a referrer is set only when an
    account is created, and never to itself); the attempt is audited once for the referrals page."""
    recorded = await session.scalar(
        select(AuditLog.id).where(AuditLog.action == SELF_REFERRAL, AuditLog.entity_id == str(user.id)).limit(1)
    )
    if recorded is None:
        audit.record(
            session,
            actor_type="user",
            actor_id=user.id,
            action=SELF_REFERRAL,
            entity_type="user",
            entity_id=user.id,
            after={"referral_code": user.referral_code},
        )


async def _create(
    session: AsyncSession, tg: TelegramUser, *, start_param: str | None, default_language: str, now: datetime
) -> User:
    """INSERT … ON CONFLICT DO NOTHING, then read: a new customer's first requests arrive together (the Mini App
    loads several at once), and whichever inserts first wins while the others wait for its commit and read its
    row, instead of failing on the unique telegram_id."""
    values = {
        "telegram_id": tg.id,
        "username": tg.username,
        "first_name": tg.first_name,
        "last_name": tg.last_name,
        "language": pick_language(tg.language_code, default_language),
        "referral_code": new_referral_code(),
        "referrer_id": await _referrer_id(session, start_param),
        "last_seen_at": now,
    }
    await session.execute(
        insert_for(session, User).values(**values).on_conflict_do_nothing(index_elements=["telegram_id"])
    )
    user = await session.scalar(select(User).where(User.telegram_id == tg.id).execution_options(populate_existing=True))
    assert user is not None  # inserted here, or committed by the request that won the race
    await record_active_day(session, user.id, now)  # a first visit is an active day (idempotent per day)
    return user


async def mark_seen(session: AsyncSession, user: User, now: datetime) -> None:
    """Keep last_seen_at current (to SEEN_RESOLUTION) and record the day's activity the first time the customer
    is seen that day; last_seen_at always moves onto a new day, so its day is the latest active day."""
    previous = user.last_seen_at
    new_day = is_new_day(previous, now)
    if previous is None or new_day or now - previous > SEEN_RESOLUTION:
        user.last_seen_at = now
    if new_day:
        await record_active_day(session, user.id, now)
