"""GET/POST /api/admin/experiments, GET /api/admin/experiments/{id} (with results per variant) and
POST …/{id}/start|stop: the same service and permission as the pages. A refusal is a 422 naming the field
(`fields`), with nothing stored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth.dependencies import StaffViewer, require
from app.deps import DbSession
from app.error_handlers import error_response
from app.experiments import service, stats
from app.inbound import RowId
from app.kit.field_errors import FieldInvalid
from app.models import Experiment

router = APIRouter(prefix="/experiments")


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(max_length=64)
    weight: int = Field(ge=1, le=service.MAX_WEIGHT)
    prices: dict[str, int] = Field(default_factory=dict, description="Price experiments: currency → minor units.")
    texts: dict[str, str] = Field(default_factory=dict, description="Text experiments: language → text.")


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(max_length=64)
    name: str = Field(max_length=255)
    kind: str = Field(description="price or text")
    target: str = Field(max_length=128, description="The plan's code (price) or the text's key (text).")
    variants: list[VariantIn] = Field(description="The first is the control.")
    conversion_days: int = 14


class ResultOut(BaseModel):
    key: str
    weight: int
    exposed: int
    converted: int
    rate: float
    low: float
    high: float
    beats_control: float | None


class ExperimentOut(BaseModel):
    id: int
    key: str
    name: str
    kind: str
    target: str
    state: str
    variants: list[dict[str, Any]]
    conversion_days: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    results: list[ResultOut] | None = None

    @classmethod
    def of(cls, e: Experiment, results: list[stats.VariantResult] | None = None) -> ExperimentOut:
        return cls(
            id=e.id,
            key=e.key,
            name=e.name,
            kind=e.kind.value,
            target=e.target,
            state=service.state(e),
            variants=e.variants,
            conversion_days=e.conversion_days,
            created_at=e.created_at,
            started_at=e.started_at,
            ended_at=e.ended_at,
            results=[ResultOut(**r.__dict__) for r in results] if results is not None else None,
        )


async def _out(db: AsyncSession, experiment_id: int) -> ExperimentOut:
    experiment = await service.get(db, experiment_id)
    return ExperimentOut.of(experiment, await stats.results(db, experiment))


@router.get("", response_model=list[ExperimentOut], dependencies=[require("experiments:write")])
async def list_experiments(db: DbSession) -> list[ExperimentOut]:
    return [ExperimentOut.of(e) for e in await service.list_experiments(db)]


@router.post("", response_model=ExperimentOut, status_code=201, responses={422: {"description": "Refused"}})
async def create_experiment(
    request: Request, db: DbSession, body: ExperimentIn, viewer: Annotated[StaffViewer, require("experiments:write")]
) -> ExperimentOut | Response:
    """A draft experiment (start it with POST …/{id}/start)."""
    draft = service.ExperimentDraft(
        key=body.key,
        name=body.name,
        kind=body.kind,
        target=body.target,
        variants=[service.VariantDraft(v.key, v.weight, prices=v.prices, texts=v.texts) for v in body.variants],
        conversion_days=body.conversion_days,
    )
    try:
        created = await service.create(db, draft, viewer.actor)
    except FieldInvalid as exc:
        await db.rollback()  # nothing of a refused request is kept
        fields = [{"field": exc.field, "message": exc.message}]
        return error_response(request, exc.status_code, exc.code, exc.message, fields=fields)
    await db.flush()
    return await _out(db, created.id)


@router.get("/{experiment_id}", response_model=ExperimentOut, dependencies=[require("experiments:write")])
async def get_experiment(db: DbSession, experiment_id: RowId) -> ExperimentOut:
    """The experiment with its results per variant."""
    return await _out(db, experiment_id)


@router.post("/{experiment_id}/start", response_model=ExperimentOut)
async def start_experiment(
    db: DbSession, experiment_id: RowId, viewer: Annotated[StaffViewer, require("experiments:write")]
) -> ExperimentOut:
    await service.start(db, experiment_id, viewer.actor)
    await db.flush()
    return await _out(db, experiment_id)


@router.post("/{experiment_id}/stop", response_model=ExperimentOut)
async def stop_experiment(
    db: DbSession, experiment_id: RowId, viewer: Annotated[StaffViewer, require("experiments:write")]
) -> ExperimentOut:
    await service.stop(db, experiment_id, viewer.actor)
    await db.flush()
    return await _out(db, experiment_id)
