"""The audit trail: who changed what, before and after, from where."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditLog


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting and from where, as domain services receive it (a staff member in the admin, the system in
    jobs), so a service writes its own audit row without knowing about HTTP."""

    type: str  # staff | user | system | provider
    id: object | None
    ip: str | None = None
    user_agent: str | None = None


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
    user_agent: str | None = None,
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
        user_agent=(user_agent or "")[:512] or None,
    )
    session.add(entry)
    return entry


def record_by(
    session: AsyncSession,
    actor: Actor,
    *,
    action: str,
    entity_type: str,
    entity_id: object | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    """`record` for a known Actor: what every staff action in a domain service calls."""
    return record(
        session,
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=after,
        ip=actor.ip,
        user_agent=actor.user_agent,
    )
