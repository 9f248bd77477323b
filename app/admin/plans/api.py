"""/api/admin/plans: the plans (on sale first, in the customers' order, then archived), one plan, create, edit,
reorder, archive and unarchive, delete a never-used plan — the same domain actions as /admin/plans. Reads need
dashboard:read (what is on sale is no secret to staff), changes settings:write."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.plans.schemas import OrderIn, PlanIn, PlanOut
from app.deps import DbSession
from app.inbound import RowId
from app.plans import service as plans

router = APIRouter(prefix="/plans")


async def _out(db: AsyncSession, plan_id: int) -> PlanOut:
    plan = await plans.get_plan(db, plan_id)
    return PlanOut.of(plan, (await plans.prices_minor(db, [plan.id]))[plan.id])


@router.get("", response_model=list[PlanOut], dependencies=[require("dashboard:read")])
async def list_plans(db: DbSession) -> list[PlanOut]:
    found = await plans.all_plans(db)
    prices = await plans.prices_minor(db, [plan.id for plan in found])
    return [PlanOut.of(plan, prices[plan.id]) for plan in found]


@router.post("", response_model=PlanOut, status_code=201)
async def create_plan(
    db: DbSession, body: PlanIn, viewer: Annotated[StaffViewer, require("settings:write")]
) -> PlanOut:
    plan = await plans.create(db, viewer.actor, body.model_dump(mode="json", exclude_unset=True))
    return await _out(db, plan.id)


@router.put("/order", response_model=list[PlanOut])
async def reorder_plans(
    db: DbSession, body: OrderIn, viewer: Annotated[StaffViewer, require("settings:write")]
) -> list[PlanOut]:
    await plans.reorder(db, viewer.actor, body.order)
    return await list_plans(db)


@router.get("/{plan_id}", response_model=PlanOut, dependencies=[require("dashboard:read")])
async def get_plan(db: DbSession, plan_id: RowId) -> PlanOut:
    return await _out(db, plan_id)


@router.put("/{plan_id}", response_model=PlanOut)
async def update_plan(
    db: DbSession, plan_id: RowId, body: PlanIn, viewer: Annotated[StaffViewer, require("settings:write")]
) -> PlanOut:
    plan = await plans.get_plan(db, plan_id, for_update=True)
    await plans.update(db, viewer.actor, plan, body.model_dump(mode="json", exclude_unset=True))
    return await _out(db, plan_id)


@router.post("/{plan_id}/archive", response_model=PlanOut)
async def archive_plan(
    db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> PlanOut:
    """Off sale: checkout no longer offers it; subscriptions on it keep running."""
    await plans.set_active(db, viewer.actor, await plans.get_plan(db, plan_id, for_update=True), False)
    return await _out(db, plan_id)


@router.post("/{plan_id}/unarchive", response_model=PlanOut)
async def unarchive_plan(
    db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> PlanOut:
    await plans.set_active(db, viewer.actor, await plans.get_plan(db, plan_id, for_update=True), True)
    return await _out(db, plan_id)


@router.delete("/{plan_id}", status_code=204)
async def delete_plan(
    db: DbSession, plan_id: RowId, viewer: Annotated[StaffViewer, require("settings:write")]
) -> Response:
    """Only a plan nobody ever subscribed to or paid for (409 otherwise: archive it)."""
    await plans.remove(db, viewer.actor, await plans.get_plan(db, plan_id, for_update=True))
    return Response(status_code=204)
