"""The broadcasts' shapes in the admin JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.admin.broadcasts.queries import Figures
from app.models import Broadcast


class ButtonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description='An http(s) link, or "web_app" for the Mini App.')
    text: dict[str, str] = Field(default_factory=dict, description="Per language.")


class BroadcastIn(BaseModel):
    """A new broadcast: created as a draft, started at once with `start`, or scheduled with `scheduled_at`."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(max_length=1000)
    bodies: dict[str, str] = Field(description="Telegram HTML per language; the default language is required.")
    segment: str = "all"
    plan_id: int | None = Field(default=None, ge=1)
    language: str | None = None
    button: ButtonIn | None = None
    is_paid: bool = False
    scheduled_at: datetime | None = Field(default=None, description="With a time zone offset.")
    start: bool = Field(default=False, description="Start it now (or at scheduled_at) instead of leaving a draft.")


class FiguresOut(BaseModel):
    status: str
    total: int
    sent: int
    failed: int
    blocked: int
    unknown: int
    skipped: int
    pending: int
    rate: float
    eta_seconds: float | None
    finished: bool

    @classmethod
    def of(cls, figures: Figures) -> FiguresOut:
        return cls(**figures.as_json())


class BroadcastOut(BaseModel):
    id: int
    title: str
    status: str
    segment: dict[str, Any]
    languages: list[str]
    is_paid: bool
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int

    @classmethod
    def of(cls, b: Broadcast) -> BroadcastOut:
        return cls(
            id=b.id,
            title=b.title,
            status=b.status.value,
            segment=b.segment,
            languages=sorted(b.bodies),
            is_paid=b.is_paid,
            created_at=b.created_at,
            scheduled_at=b.scheduled_at,
            started_at=b.started_at,
            finished_at=b.finished_at,
            total=b.total,
            sent=b.sent,
            failed=b.failed,
            skipped=b.skipped,
            unknown=b.unknown,
        )


class BroadcastDetailOut(BaseModel):
    broadcast: BroadcastOut
    recipients: int  # the segment's reach now (before the start), or the audience frozen at the start
    by_language: dict[str, int]
    figures: FiguresOut
