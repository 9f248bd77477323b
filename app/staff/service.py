"""Staff accounts: creation with validation, and what owners change about them (role, permission overrides,
deactivation, second factor, lockout, linked Telegram) — each change audited before/after in the same
transaction. Guards keep the shop manageable: nobody deactivates or demotes themselves, and the last active
owner stays an active owner."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from app.config import Settings
from app.db import standalone_transaction
from app.models import Staff, StaffRole
from app.staff.permissions import UnknownPermission, normalise_overrides
from app.staff.sessions import revoke_everything, revoke_session

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
CLI = Actor("system", "cli")


class StaffError(ValueError):
    """Invalid or duplicate staff account data."""

    def __init__(self, message: str, *, field: str = "__all__") -> None:
        super().__init__(message)
        self.field = field


def _role(role: str) -> StaffRole:
    try:
        return StaffRole(role)
    except ValueError:
        raise StaffError(f"role must be one of {', '.join(r.value for r in StaffRole)}", field="role") from None


async def _telegram_free(session: AsyncSession, telegram_id: int | None, *, except_id: int | None = None) -> None:
    if telegram_id is None:
        return
    if not 0 < telegram_id < 2**53:
        raise StaffError("Telegram id must be a positive number", field="telegram_id")
    holder = await session.scalar(select(Staff.id).where(Staff.telegram_id == telegram_id))
    if holder is not None and holder != except_id:
        raise StaffError("this Telegram id is linked to another staff account", field="telegram_id")


async def add_staff(
    session: AsyncSession,
    username: str,
    password: str,
    role: str,
    telegram_id: int | None = None,
    *,
    actor: Actor = CLI,
) -> Staff:
    """Validate and add a staff account to the session's transaction."""
    if not USERNAME_PATTERN.match(username):
        raise StaffError("username must be 3–64 characters: letters, digits, _ . -", field="username")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password")
    staff_role = _role(role)
    if await session.scalar(select(Staff.id).where(Staff.username == username)):
        raise StaffError(f"a staff account named {username!r} already exists", field="username")
    await _telegram_free(session, telegram_id)
    staff = Staff(username=username, password_hash=hash_password(password), role=staff_role, telegram_id=telegram_id)
    session.add(staff)
    await session.flush()
    record_by(
        session,
        actor,
        action="staff.create",
        entity_type="staff",
        entity_id=staff.id,
        after={"username": username, "role": staff_role.value, "telegram_id": telegram_id},
    )
    return staff


async def create_staff(settings: Settings, username: str, password: str, role: str, telegram_id: int | None) -> Staff:
    """The CLI's entry: one transaction of its own."""
    try:
        async with standalone_transaction(settings) as session:
            return await add_staff(session, username, password, role, telegram_id)
    except IntegrityError:
        raise StaffError("that username or Telegram id is already taken") from None


def snapshot(staff: Staff) -> dict[str, Any]:
    """What the audit trail shows of a staff account (never the password hash or the TOTP secret)."""
    return {
        "username": staff.username,
        "role": staff.role.value,
        "is_active": staff.is_active,
        "telegram_id": staff.telegram_id,
        "permission_overrides": staff.permission_overrides,
        "two_factor": staff.totp_secret is not None,
        "locked": staff.locked_until is not None,
    }


async def _active_owners(session: AsyncSession) -> int:
    query = select(func.count()).select_from(Staff).where(Staff.role == StaffRole.OWNER, Staff.is_active)
    return await session.scalar(query) or 0


async def _keeps_an_owner(session: AsyncSession, staff: Staff) -> None:
    if staff.role == StaffRole.OWNER and staff.is_active and await _active_owners(session) <= 1:
        raise StaffError("this is the last active owner; make someone else an owner first")


def _not_self(staff: Staff, actor: Actor, what: str) -> None:
    if str(staff.id) == str(actor.id):
        raise StaffError(f"you cannot {what} your own account; ask another owner")


def _audit(session: AsyncSession, actor: Actor, action: str, staff: Staff, before: dict[str, Any]) -> None:
    record_by(
        session, actor, action=action, entity_type="staff", entity_id=staff.id, before=before, after=snapshot(staff)
    )


async def change_role(session: AsyncSession, staff: Staff, role: str, *, actor: Actor) -> Staff:
    new_role = _role(role)
    if new_role == staff.role:
        return staff
    _not_self(staff, actor, "change the role of")
    await _keeps_an_owner(session, staff)
    before = snapshot(staff)
    staff.role = new_role
    _audit(session, actor, "staff.role_changed", staff, before)
    return staff


async def set_overrides(
    session: AsyncSession, staff: Staff, grant: list[str], revoke: list[str], *, actor: Actor
) -> Staff:
    try:
        overrides = normalise_overrides(grant, revoke)
    except UnknownPermission as exc:
        raise StaffError(str(exc), field="overrides") from None
    if overrides == staff.permission_overrides:
        return staff
    if "staff:manage" in (overrides or {}).get("revoke", []):
        _not_self(staff, actor, "take staff management away from")
    before = snapshot(staff)
    staff.permission_overrides = overrides
    _audit(session, actor, "staff.permissions_changed", staff, before)
    return staff


async def deactivate(session: AsyncSession, staff: Staff, *, actor: Actor) -> Staff:
    """Deactivate and revoke every session and API token at once: the account stops working on the next
    request, wherever it is signed in."""
    if not staff.is_active:
        return staff
    _not_self(staff, actor, "deactivate")
    await _keeps_an_owner(session, staff)
    before = snapshot(staff)
    staff.is_active = False
    revoked = await revoke_everything(session, staff.id)
    _audit(session, actor, "staff.deactivated", staff, before | {"revoked_credentials": revoked})
    return staff


async def activate(session: AsyncSession, staff: Staff, *, actor: Actor) -> Staff:
    if staff.is_active:
        return staff
    before = snapshot(staff)
    staff.is_active = True
    _audit(session, actor, "staff.activated", staff, before)
    return staff


async def reset_two_factor(session: AsyncSession, staff: Staff, *, actor: Actor) -> Staff:
    """For a lost phone: the second factor is removed; the staff member enrols again at their next sign-in
    (when required) or from their account page."""
    if staff.totp_secret is None:
        return staff
    before = snapshot(staff)
    staff.totp_secret = None
    staff.totp_last_step = None
    _audit(session, actor, "staff.2fa_reset", staff, before)
    return staff


async def unlock(session: AsyncSession, staff: Staff, *, actor: Actor) -> Staff:
    if staff.locked_until is None and not staff.failed_logins:
        return staff
    before = snapshot(staff)
    staff.locked_until = None
    staff.failed_logins = 0
    _audit(session, actor, "staff.unlocked", staff, before)
    return staff


async def link_telegram(session: AsyncSession, staff: Staff, telegram_id: int | None, *, actor: Actor) -> Staff:
    if telegram_id == staff.telegram_id:
        return staff
    await _telegram_free(session, telegram_id, except_id=staff.id)
    before = snapshot(staff)
    staff.telegram_id = telegram_id
    _audit(session, actor, "staff.telegram_linked", staff, before)
    return staff


async def end_session(session: AsyncSession, staff: Staff, session_id: int, *, actor: Actor) -> bool:
    if not await revoke_session(session, staff.id, session_id):
        return False
    record_by(
        session,
        actor,
        action="staff.session_revoked",
        entity_type="staff",
        entity_id=staff.id,
        after={"session_id": session_id},
    )
    return True
