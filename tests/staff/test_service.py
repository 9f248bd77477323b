"""Staff accounts: validation errors change nothing; creation is audited; passwords are hashed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import verify_password
from app.models import AuditLog, Staff
from app.staff.service import StaffError, add_staff


async def _count(db: AsyncSession, model: type) -> int:
    return await db.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("x", "long-enough-password", "admin", "username must be"),
        ("bad name!", "long-enough-password", "admin", "username must be"),
        ("alice", "short", "admin", "at least 10 characters"),
        ("alice", "long-enough-password", "emperor", "role must be one of"),
    ],
)
async def test_invalid_staff_is_rejected_without_changes(
    db: AsyncSession, username: str, password: str, role: str, message: str
) -> None:
    with pytest.raises(StaffError, match=message):
        await add_staff(db, username, password, role)
    assert await _count(db, Staff) == 0
    assert await _count(db, AuditLog) == 0


async def test_staff_is_created_hashed_and_audited(db: AsyncSession) -> None:
    staff = await add_staff(db, "alice", "correct horse battery", "support", telegram_id=42)
    assert staff.password_hash != "correct horse battery"
    assert verify_password(staff.password_hash, "correct horse battery")
    assert not verify_password(staff.password_hash, "wrong password!!")
    audit = await db.scalar(select(AuditLog).where(AuditLog.action == "staff.create"))
    assert audit is not None and audit.entity_id == str(staff.id)
    assert audit.after == {"username": "alice", "role": "support", "telegram_id": 42}


async def test_duplicate_username_is_rejected(db: AsyncSession) -> None:
    await add_staff(db, "alice", "correct horse battery", "admin")
    with pytest.raises(StaffError, match="already exists"):
        await add_staff(db, "alice", "another long password", "admin")
    assert await _count(db, Staff) == 1
