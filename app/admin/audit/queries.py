"""The audit log list: filters by staff member, action, entity and date (the shop's time zone), newest first,
keyset-paged by id (ids grow with time, and the index on created_at serves the date range)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.tables import ListState, Page, keyset_page
from app.models import AuditLog, Staff

FILTERS = ("staff", "action", "entity_type", "entity_id", "from", "to")


@dataclass(frozen=True)
class AuditFilters:
    staff_id: int | None = None
    action: str | None = None  # exact, or a prefix ending in "." (e.g. "staff.")
    entity_type: str | None = None
    entity_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive

    @classmethod
    def parse(cls, params: dict[str, str], zone: ZoneInfo) -> tuple[AuditFilters, dict[str, str]]:
        """Filters from the URL, and a message per filter that could not be read (that filter is then left out,
        and the page says why next to it)."""
        errors: dict[str, str] = {}
        staff_id = None
        if raw := params.get("staff"):
            if raw.isdigit():
                staff_id = int(raw)
            else:
                errors["staff"] = "Choose a staff member from the list."
        days: dict[str, date | None] = {}
        for name in ("from", "to"):
            days[name] = None
            if raw := params.get(name):
                try:
                    days[name] = date.fromisoformat(raw)
                except ValueError:
                    errors[name] = "Expected a date like 2026-12-31."
        if days["from"] and days["to"] and days["from"] > days["to"]:
            errors["to"] = "The end date is before the start date."
            days["to"] = None
        since = datetime.combine(days["from"], time(), tzinfo=zone) if days["from"] else None
        until = datetime.combine(days["to"] + timedelta(days=1), time(), tzinfo=zone) if days["to"] else None
        filters = cls(
            staff_id=staff_id,
            action=(params.get("action") or None),
            entity_type=(params.get("entity_type") or None),
            entity_id=(params.get("entity_id") or None),
            since=since,
            until=until,
        )
        return filters, errors

    def apply(self, stmt: Select) -> Select:
        if self.staff_id is not None:
            stmt = stmt.where(AuditLog.actor_type == "staff", AuditLog.actor_id == str(self.staff_id))
        if self.action:
            if self.action.endswith("."):
                stmt = stmt.where(AuditLog.action.startswith(self.action, autoescape=True))
            else:
                stmt = stmt.where(AuditLog.action == self.action)
        if self.entity_type:
            stmt = stmt.where(AuditLog.entity_type == self.entity_type)
        if self.entity_id:
            stmt = stmt.where(AuditLog.entity_id == self.entity_id)
        if self.since is not None:
            stmt = stmt.where(AuditLog.created_at >= self.since)
        if self.until is not None:
            stmt = stmt.where(AuditLog.created_at < self.until)
        return stmt


async def audit_page(db: AsyncSession, filters: AuditFilters, state: ListState) -> Page[AuditLog]:
    stmt = filters.apply(select(AuditLog))
    return await keyset_page(
        db,
        stmt,
        state,
        sort_column=AuditLog.id,
        id_column=AuditLog.id,
        cursor_of=lambda row: (row.id, row.id),
        scalars=True,
    )


async def staff_names(db: AsyncSession) -> dict[str, str]:
    """Staff id (as the audit log stores it) → username, for the actor column and the filter's choices."""
    rows = await db.execute(select(Staff.id, Staff.username).order_by(Staff.username))
    return {str(staff_id): username for staff_id, username in rows}


async def known_actions(db: AsyncSession) -> list[str]:
    """The actions that occur, for the filter's suggestions (distinct over the action index)."""
    return list(await db.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action).limit(500)))
