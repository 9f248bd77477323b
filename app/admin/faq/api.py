"""/api/admin/faq: categories and entries as JSON, and their changes through the same domain actions as the
page (422 naming the field, nothing changed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.faq import queries
from app.admin.faq.schemas import CategoryIn, ItemIn
from app.deps import DbSession
from app.help import staff_actions as faq
from app.help.staff_actions import category_state, item_state
from app.inbound import RowId

router = APIRouter(prefix="/faq")
PERMISSION = "texts:write"


def _category(category: Any) -> dict[str, Any]:
    return {"id": category.id, **category_state(category)}


def _item(item: Any) -> dict[str, Any]:
    return {"id": item.id, **item_state(item)}


@router.get("", dependencies=[require(PERMISSION)])
async def get_faq(db: DbSession, language: Annotated[str | None, Query(max_length=8)] = None) -> dict[str, Any]:
    return {
        "categories": [_category(c) for c in await queries.categories(db)],
        "items": [_item(i) for i in await queries.items(db, language)],
    }


@router.post("/categories", status_code=201)
async def create_category(
    db: DbSession, body: CategoryIn, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> dict[str, Any]:
    return _category(await faq.create_category(db, viewer.actor, **body.model_dump()))


@router.put("/categories/{category_id}")
async def update_category(
    db: DbSession, category_id: RowId, body: CategoryIn, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> dict[str, Any]:
    category = await faq.get_category(db, category_id)
    return _category(await faq.update_category(db, viewer.actor, category, **body.model_dump()))


@router.delete("/categories/{category_id}", status_code=204)
async def delete_category(
    db: DbSession, category_id: RowId, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> None:
    await faq.delete_category(db, viewer.actor, await faq.get_category(db, category_id))


@router.post("/items", status_code=201)
async def create_item(
    db: DbSession, body: ItemIn, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> dict[str, Any]:
    return _item(await faq.create_item(db, viewer.actor, body.model_dump()))


@router.put("/items/{item_id}")
async def update_item(
    db: DbSession, item_id: RowId, body: ItemIn, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> dict[str, Any]:
    item = await faq.get_item(db, item_id)
    return _item(await faq.update_item(db, viewer.actor, item, body.model_dump()))


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(db: DbSession, item_id: RowId, viewer: Annotated[StaffViewer, require(PERMISSION)]) -> None:
    await faq.delete_item(db, viewer.actor, await faq.get_item(db, item_id))
