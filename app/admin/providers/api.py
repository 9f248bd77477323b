"""/api/admin/providers: each payment provider with its settings (secrets only as set/unset and their last
characters), switching one on or off, changing its settings, and testing its connection. Owner-level
(settings:write) throughout: even the shape of the credentials is not for every role."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from app.admin.auth.dependencies import StaffViewer, require
from app.admin.providers.views import ProviderView, provider_views
from app.deps import DbSession
from app.payments import provider_settings
from app.payments.registry import check_connection

router = APIRouter(prefix="/providers")

ProviderName = Annotated[str, Path(max_length=32, pattern=r"^[a-z]+$")]


class FieldOut(BaseModel):
    key: str
    kind: str
    source: Literal["admin", "environment", "unset"]
    value: Any = Field(None, description="Not for secrets.")
    is_set: bool | None = Field(None, description="Secrets only.")
    ends_with: str | None = Field(None, description="Secrets only: the last 4 characters of a long secret.")


class ProviderOut(BaseModel):
    name: str
    active: bool = Field(description="Offered at checkout now.")
    switch: bool | None = Field(description="Set in the admin: on, off, or null (as the environment decides).")
    fields: list[FieldOut]
    webhook_url: str | None
    last_webhook_kind: str | None
    last_webhook_at: datetime | None
    can_test: bool

    @classmethod
    def of(cls, view: ProviderView) -> ProviderOut:
        return cls(
            name=view.name,
            active=view.active,
            switch=view.switch,
            fields=[FieldOut(**field) for field in view.fields],
            webhook_url=view.webhook_url,
            last_webhook_kind=view.last_webhook_kind,
            last_webhook_at=view.last_webhook_at,
            can_test=view.can_test,
        )


class ProviderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="Leave out to keep; null: as the environment decides.")
    values: dict[str, str | bool] = Field(default_factory=dict, max_length=20)
    reset: list[str] = Field(default_factory=list, max_length=20, description="Back to the environment's value.")


class TestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: dict[str, str | bool] = Field(default_factory=dict, max_length=20, description="Typed, not saved.")


class TestOut(BaseModel):
    verdict: Literal["ok", "refused", "unreachable", "not_configured", "not_available"]
    message: str


async def _views(request: Request, db: DbSession, only: str | None = None) -> list[ProviderView]:
    resources = request.app.state.resources
    return await provider_views(db, request.app.state.settings, resources.payments, only)


@router.get("", response_model=list[ProviderOut], dependencies=[require("settings:write")])
async def list_providers(request: Request, db: DbSession) -> list[ProviderOut]:
    return [ProviderOut.of(view) for view in await _views(request, db)]


@router.put("/{name}", response_model=ProviderOut)
async def update_provider(
    request: Request,
    db: DbSession,
    name: ProviderName,
    body: ProviderIn,
    viewer: Annotated[StaffViewer, require("settings:write")],
) -> ProviderOut:
    enabled = body.enabled if "enabled" in body.model_fields_set else "keep"
    settings = request.app.state.settings
    await provider_settings.update(
        db, viewer.actor, settings, name, enabled=enabled, values=body.values, reset=body.reset
    )
    await db.commit()
    # This process at once; the others within the registry's watch interval.
    await request.app.state.resources.payments.reload(db)
    (view,) = await _views(request, db, name)
    return ProviderOut.of(view)


@router.post("/{name}/test", response_model=TestOut)
async def test_provider(
    request: Request,
    db: DbSession,
    name: ProviderName,
    viewer: Annotated[StaffViewer, require("settings:write")],
    body: TestIn | None = None,
) -> TestOut:
    """Ask the provider's API whether the credentials work (the saved ones, or `values` not saved yet)."""
    result = await check_connection(db, request.app.state.settings, name, body.values if body else None)
    return TestOut(verdict=result.verdict, message=result.message)
