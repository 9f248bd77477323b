"""The audit trail: who changed what, before and after, from where."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditLog


def record(
    session: AsyncSession,
    *,
    actor_type: str,
    actor_id: object | None,
    action: str,
    entity_type: str,
    entity_id: object | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditLog:
    """Add an audit row to the current transaction (it commits or rolls back with the change itself)."""
    entry = AuditLog(
        actor_type=actor_type,
        actor_id=None if actor_id is None else str(actor_id),
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        before=before,
        after=after,
        ip=ip,
    )
    session.add(entry)
    return entry
