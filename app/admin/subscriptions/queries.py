"""The subscriptions list of the admin API: filters and keyset pagination by id (the newest first)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.users.queries import MAX_ID, between
from app.kit.field_errors import FieldInvalid
from app.models import Plan, Subscription, SubscriptionStatus


class SubscriptionFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: int | None = Field(None, ge=1, le=MAX_ID)
    status: Literal["pending", "trial", "active", "expired", "cancelled"] | None = None
    plan: int | None = Field(None, ge=1, le=MAX_ID)
    trial: bool | None = None
    ends_from: date | None = None
    ends_to: date | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value


async def page(
    session: AsyncSession, filters: SubscriptionFilters, *, cursor: str | None, limit: int
) -> tuple[list[tuple[Subscription, Plan | None]], str | None]:
    statement = select(Subscription, Plan).outerjoin(Plan, Plan.id == Subscription.plan_id)
    if filters.user_id is not None:
        statement = statement.where(Subscription.user_id == filters.user_id)
    if filters.status:
        statement = statement.where(Subscription.status == SubscriptionStatus(filters.status))
    if filters.plan is not None:
        statement = statement.where(Subscription.plan_id == filters.plan)
    if filters.trial is not None:
        statement = statement.where(Subscription.is_trial.is_(filters.trial))
    statement = statement.where(*between(Subscription.ends_at, filters.ends_from, filters.ends_to))
    if cursor:
        if not cursor.isdigit() or len(cursor) > 18:
            raise FieldInvalid("cursor", "This page link is damaged; start from the first page.")
        statement = statement.where(Subscription.id < int(cursor))
    rows = (await session.execute(statement.order_by(Subscription.id.desc()).limit(limit + 1))).all()
    found = [(sub, plan) for sub, plan in rows[:limit]]
    return found, str(found[-1][0].id) if len(rows) > limit else None
