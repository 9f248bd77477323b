"""Staff accounts: creation with validation, audited."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from app.config import Settings
from app.db import standalone_transaction
from app.models import Staff, StaffRole

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")


class StaffError(ValueError):
    """Invalid or duplicate staff account data."""


async def add_staff(
    session: AsyncSession, username: str, password: str, role: str, telegram_id: int | None = None
) -> Staff:
    """Validate and add a staff account to the session's transaction."""
    if not USERNAME_PATTERN.match(username):
        raise StaffError("username must be 3–64 characters: letters, digits, _ . -")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    try:
        staff_role = StaffRole(role)
    except ValueError:
        raise StaffError(f"role must be one of {', '.join(r.value for r in StaffRole)}") from None
    if await session.scalar(select(Staff.id).where(Staff.username == username)):
        raise StaffError(f"a staff account named {username!r} already exists")
    staff = Staff(username=username, password_hash=hash_password(password), role=staff_role, telegram_id=telegram_id)
    session.add(staff)
    await session.flush()
    record(
        session,
        actor_type="system",
        actor_id="cli",
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
