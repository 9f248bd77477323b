"""GET/PUT /api/admin/subscriptions…: the subscriptions list, one subscription, its changes and cancellation,
through the domain's staff actions (app/subscriptions/staff_actions.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.subscriptions.queries import SubscriptionFilters, page
from app.admin.users.queries import MAX_PAGE_SIZE, PAGE_SIZE
from app.admin.users.schemas import RowId, SubscriptionOut, SubscriptionPage, SubscriptionUpdate
from app.deps import DbSession
from app.kit.field_errors import FieldInvalid
from app.models import Plan, Subscription
from app.subscriptions import staff_actions

router = APIRouter(prefix="/subscriptions")


async def _out(db: AsyncSession, subscription: Subscription) -> SubscriptionOut:
    plan = await db.get(Plan, subscription.plan_id) if subscription.plan_id else None
    return SubscriptionOut.of(subscription, plan)


@router.get("", response_model=SubscriptionPage, dependencies=[require("users:read")])
async def list_subscriptions(
    db: DbSession,
    filters: Annotated[SubscriptionFilters, Query()],
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
) -> SubscriptionPage:
    rows, next_cursor = await page(db, filters, cursor=cursor, limit=limit)
    return SubscriptionPage(items=[SubscriptionOut.of(sub, plan) for sub, plan in rows], next_cursor=next_cursor)


@router.get("/{subscription_id}", response_model=SubscriptionOut, dependencies=[require("users:read")])
async def get_subscription(db: DbSession, subscription_id: RowId) -> SubscriptionOut:
    return await _out(db, await staff_actions.get_subscription(db, subscription_id))


@router.put("/{subscription_id}", response_model=SubscriptionOut)
async def update_subscription(
    db: DbSession,
    subscription_id: RowId,
    body: SubscriptionUpdate,
    viewer: Annotated[StaffViewer, require("users:write")],
) -> SubscriptionOut:
    """Each given change is its own audited action, all in one transaction: one refused, none applied."""
    if body.ends_at is not None and body.extend_days is not None:
        raise FieldInvalid("extend_days", "Give either ends_at or extend_days, not both.")
    if not body.model_fields_set:
        raise FieldInvalid("body", "Nothing to change.")
    subscription = await staff_actions.get_subscription(db, subscription_id)
    if body.ends_at is not None:
        await staff_actions.set_end_date(db, viewer.actor, subscription, body.ends_at)
    if body.extend_days is not None:
        await staff_actions.extend(db, viewer.actor, subscription, body.extend_days)
    if body.plan_id is not None:
        await staff_actions.change_plan(db, viewer.actor, subscription, body.plan_id)
    if body.auto_renew is not None:
        await staff_actions.set_auto_renew(db, viewer.actor, subscription, body.auto_renew)
    return await _out(db, subscription)


@router.post("/{subscription_id}/cancel", response_model=SubscriptionOut)
async def cancel_subscription(
    db: DbSession, subscription_id: RowId, viewer: Annotated[StaffViewer, require("users:write")]
) -> SubscriptionOut:
    subscription = await staff_actions.get_subscription(db, subscription_id)
    await staff_actions.cancel(db, viewer.actor, subscription)
    return await _out(db, subscription)
