"""GET/PUT /api/admin/settings: the runtime settings as JSON (value, env default, type and bounds of each), and
changes through the same service as the page: all given values validated first, 422 naming the first bad one
and nothing saved."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.settings.schemas import RateIn
from app.admin.settings.views import as_json
from app.deps import AppSettings, DbSession
from app.kit.clock import utcnow
from app.runtime_settings import service
from app.stats import rates

router = APIRouter(prefix="/settings")


class SettingsUpdate(BaseModel):
    values: dict[str, Any] = Field(default_factory=dict, description="key → new value")
    reset: list[str] = Field(default_factory=list, max_length=64, description="keys to set back to their default")


class SettingsOut(BaseModel):
    items: list[dict[str, Any]]


async def _out(db: DbSession, settings: AppSettings) -> SettingsOut:
    return SettingsOut(items=[as_json(entry) for entry in await service.entries(db, settings)])


@router.get("", response_model=SettingsOut, dependencies=[require("settings:write")])
async def get_settings(db: DbSession, settings: AppSettings) -> SettingsOut:
    return await _out(db, settings)


@router.put("", response_model=SettingsOut)
async def put_settings(
    db: DbSession,
    settings: AppSettings,
    body: SettingsUpdate,
    viewer: Annotated[StaffViewer, require("settings:write")],
) -> SettingsOut:
    await service.update(db, viewer.actor, settings, body.values, reset=tuple(body.reset))
    return await _out(db, settings)


class RateOut(BaseModel):
    currency: str
    quote_currency: str
    valid_from: date
    rate: str


@router.get("/rates", response_model=list[RateOut], dependencies=[require("settings:write")])
async def get_rates(db: DbSession, settings: AppSettings) -> list[RateOut]:
    quote = (await service.current(db, settings)).reporting_currency
    return [
        RateOut(currency=r.currency, quote_currency=r.quote_currency, valid_from=r.valid_from, rate=str(r.rate))
        for r in await rates.recent_rates(db, quote)
    ]


@router.put("/rates", response_model=RateOut)
async def put_rate(
    db: DbSession, settings: AppSettings, body: RateIn, viewer: Annotated[StaffViewer, require("settings:write")]
) -> RateOut:
    quote = (await service.current(db, settings)).reporting_currency
    row = await rates.staff_set_rate(db, viewer.actor, quote=quote, today=utcnow().date(), **body.model_dump())
    return RateOut(
        currency=row.currency, quote_currency=row.quote_currency, valid_from=row.valid_from, rate=str(row.rate)
    )
