"""Password (+ TOTP) sign-in of staff, with lockout per account and per address.

Per account the counter lives on the Staff row (it survives restarts and owners can see it): after
MAX_FAILURES wrong passwords or codes in a row the account is locked for LOCKOUT. Per address the shared rate
limiter (Redis when configured, memory in the demo) counts every attempt, so guessing across many usernames
from one place is stopped too. A failure is returned, not raised: the counter must be committed with the
request, and an exception would roll it back."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth import totp
from app.audit.service import Actor, record_by
from app.auth.passwords import hash_password, verify_password
from app.kit.clock import utcnow
from app.kit.errors import AppError, NotAuthenticated, RateLimited
from app.kit.ratelimit import RateLimiter
from app.models import Staff, StaffRole

log = logging.getLogger("vpnshop.admin")

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
ATTEMPTS_PER_IP = 20
IP_WINDOW_SECONDS = 15 * 60
# Roles that must use a second factor when ADMIN_REQUIRE_2FA is on.
TWO_FACTOR_ROLES = frozenset({StaffRole.OWNER, StaffRole.ADMIN})


class SignInFailed(NotAuthenticated):
    """Wrong username or password."""

    code = "sign_in_failed"


class AccountLocked(RateLimited):
    """Too many failed sign-ins: this account is locked for a while."""

    code = "account_locked"


class OtpRequired(NotAuthenticated):
    """Enter the 6-digit code from your authenticator app."""

    code = "otp_required"


class OtpInvalid(NotAuthenticated):
    """The code is wrong or has already been used; enter the current one."""

    code = "otp_invalid"


@dataclass(frozen=True, slots=True)
class SignInOutcome:
    staff: Staff | None
    error: AppError | None = None
    # Password right, but this role must enrol a second factor before it may sign in.
    must_enrol: bool = False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")


def must_use_2fa(staff: Staff, *, require_2fa: bool) -> bool:
    return require_2fa and staff.role in TWO_FACTOR_ROLES


async def password_sign_in(
    db: AsyncSession,
    limiter: RateLimiter,
    *,
    username: str,
    password: str,
    otp: str | None,
    require_2fa: bool,
    actor: Actor,
) -> SignInOutcome:
    decision = await limiter.hit(f"admin-login-ip:{actor.ip}", ATTEMPTS_PER_IP, IP_WINDOW_SECONDS)
    if not decision.allowed:
        _audit(db, actor, "admin.login_refused", None, {"username": username[:64], "reason": "ip_rate"})
        return SignInOutcome(
            None,
            RateLimited("Too many sign-in attempts from here; wait a few minutes.", retry_after=decision.retry_after),
        )
    now = utcnow()
    staff = await db.scalar(select(Staff).where(Staff.username == username))
    if staff is not None and staff.locked_until is not None and staff.locked_until > now:
        _audit(db, actor, "admin.login_refused", staff.id, {"reason": "locked"})
        retry = int((staff.locked_until - now).total_seconds()) + 1
        return SignInOutcome(None, AccountLocked(retry_after=retry))
    if staff is None or not staff.is_active:
        verify_password(_dummy_hash(), password)  # same time as a real check: no probing for usernames
        _audit(db, actor, "admin.login_failed", staff.id if staff else None, {"username": username[:64]})
        return SignInOutcome(None, SignInFailed())
    if not verify_password(staff.password_hash, password):
        return _failure(db, staff, actor, SignInFailed(), "password")
    if staff.totp_secret:
        if not otp:
            return SignInOutcome(None, OtpRequired())
        step = totp.matching_step(totp.decrypt_secret(staff.totp_secret), otp, after=staff.totp_last_step)
        if step is None:
            return _failure(db, staff, actor, OtpInvalid(), "otp")
        staff.totp_last_step = step
    staff.failed_logins = 0
    staff.locked_until = None
    if must_use_2fa(staff, require_2fa=require_2fa) and not staff.totp_secret:
        return SignInOutcome(staff, must_enrol=True)
    return SignInOutcome(staff)


def _failure(db: AsyncSession, staff: Staff, actor: Actor, error: AppError, factor: str) -> SignInOutcome:
    staff.failed_logins += 1
    _audit(db, actor, "admin.login_failed", staff.id, {"factor": factor, "failures": staff.failed_logins})
    if staff.failed_logins >= MAX_FAILURES:
        staff.locked_until = utcnow() + LOCKOUT
        staff.failed_logins = 0
        log.warning("staff %s locked after %s failed sign-ins from %s", staff.id, MAX_FAILURES, actor.ip)
        _audit(db, actor, "staff.locked", staff.id, {"until": staff.locked_until.isoformat()})
    return SignInOutcome(None, error)


def _audit(db: AsyncSession, actor: Actor, action: str, staff_id: int | None, after: dict) -> None:
    who = Actor("staff" if staff_id else "anonymous", staff_id, actor.ip, actor.user_agent)
    record_by(db, who, action=action, entity_type="staff", entity_id=staff_id, after=after)
