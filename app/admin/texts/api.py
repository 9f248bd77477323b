"""/api/admin/texts: the customer-facing texts per language as JSON, one text, and its override: PUT stores
one (validated like the page: 422 naming the field, nothing stored), DELETE goes back to the default."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.texts.views import as_json
from app.deps import DbSession
from app.kit.i18n import DEFAULT_LANGUAGE
from app.texts import service

router = APIRouter(prefix="/texts")
PERMISSION = "texts:write"


class TextBody(BaseModel):
    body: str | dict[str, str]


class TextsOut(BaseModel):
    items: list[dict[str, Any]]


@router.get("", response_model=TextsOut, dependencies=[require(PERMISSION)])
async def list_texts(
    db: DbSession,
    language: Annotated[str, Query(max_length=8)] = DEFAULT_LANGUAGE,
    area: Annotated[str | None, Query(max_length=64)] = None,
    search: Annotated[str, Query(max_length=100)] = "",
) -> TextsOut:
    return TextsOut(items=[as_json(text) for text in await service.listing(db, language, area=area, search=search)])


@router.get("/{language}/{key}", dependencies=[require(PERMISSION)])
async def get_text(db: DbSession, language: str, key: str) -> dict[str, Any]:
    return as_json(await service.get(db, key, language))


@router.put("/{language}/{key}")
async def put_text(
    db: DbSession, language: str, key: str, body: TextBody, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> dict[str, Any]:
    return as_json(await service.save(db, viewer.actor, key, language, body.body))


@router.delete("/{language}/{key}")
async def reset_text(
    db: DbSession, language: str, key: str, viewer: Annotated[StaffViewer, require(PERMISSION)]
) -> dict[str, Any]:
    return as_json(await service.reset(db, viewer.actor, key, language))
