"""GET/PUT /api/admin/users…: the customers table's filters and search as JSON, one customer, and the changes
of the customer page, through the same domain services and permission checks as the pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.users.queries import MAX_PAGE_SIZE, PAGE_SIZE, CustomerFilters, CustomerQuery
from app.admin.users.schemas import BlockIn, RowId, UnblockIn, UserOut, UserPage, UserUpdate
from app.deps import DbSession
from app.kit.field_errors import FieldInvalid
from app.models import Plan
from app.subscriptions.activation import latest_subscription
from app.users import staff_actions

router = APIRouter(prefix="/users")


@router.get("", response_model=UserPage, dependencies=[require("users:read")])
async def list_users(
    db: DbSession,
    filters: Annotated[CustomerFilters, Query()],
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
) -> UserPage:
    """Customers, filtered and sorted as on the page (`?search=` is the smart search box)."""
    page = await CustomerQuery(filters).page(db, cursor=cursor, limit=limit)
    return UserPage(
        items=[UserOut.of(row.user, row.subscription, row.plan) for row in page.rows], next_cursor=page.next_cursor
    )


async def _out(db: DbSession, user_id: int) -> UserOut:
    user = await staff_actions.get_user(db, user_id)
    subscription = await latest_subscription(db, user.id)
    plan = await db.scalar(select(Plan).where(Plan.id == subscription.plan_id)) if subscription else None
    return UserOut.of(user, subscription, plan)


@router.get("/{user_id}", response_model=UserOut, dependencies=[require("users:read")])
async def get_user(db: DbSession, user_id: RowId) -> UserOut:
    return await _out(db, user_id)


@router.put("/{user_id}", response_model=UserOut)
async def update_user(
    db: DbSession, user_id: RowId, body: UserUpdate, viewer: Annotated[StaffViewer, require("users:write")]
) -> UserOut:
    changes = body.model_dump(exclude_unset=True)
    for name in ("language", "marketing_opt_out"):
        if name in changes and changes[name] is None:
            raise FieldInvalid(name, "This field cannot be empty.")
    user = await staff_actions.get_user(db, user_id, for_update=True)
    await staff_actions.update_profile(db, viewer.actor, user, changes)
    return await _out(db, user_id)


@router.post("/{user_id}/block", response_model=UserOut)
async def block_user(
    db: DbSession, user_id: RowId, body: BlockIn, viewer: Annotated[StaffViewer, require("users:write")]
) -> UserOut:
    user = await staff_actions.get_user(db, user_id, for_update=True)
    await staff_actions.block(db, viewer.actor, user, body.reason)
    return await _out(db, user_id)


@router.post("/{user_id}/unblock", response_model=UserOut)
async def unblock_user(
    db: DbSession, user_id: RowId, viewer: Annotated[StaffViewer, require("users:write")], body: UnblockIn | None = None
) -> UserOut:
    user = await staff_actions.get_user(db, user_id, for_update=True)
    await staff_actions.unblock(db, viewer.actor, user, body.reason if body else None)
    return await _out(db, user_id)
