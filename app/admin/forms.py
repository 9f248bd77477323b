"""Forms validated by the same pydantic models as the JSON API, with errors keyed by field for inline display
(admin/components/form.html)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

M = TypeVar("M", bound=BaseModel)


def field_errors(exc: ValidationError) -> dict[str, str]:
    """field → first message; errors about the whole form go under "__all__"."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "__all__"
        message = error["msg"].removeprefix("Value error, ")
        errors.setdefault(name, message)
    return errors


def parse_form(model: type[M], data: Mapping[str, Any]) -> tuple[M | None, dict[str, str]]:
    """The validated model, or None and the errors to show next to each field. Empty strings count as
    missing, as a blank form field means "nothing entered"."""
    values = {key: value for key, value in data.items() if key != "csrf_token" and value != ""}
    try:
        return model.model_validate(values), {}
    except ValidationError as exc:
        return None, field_errors(exc)


async def undo(request: Request, db: AsyncSession) -> None:
    """Keep nothing of a refused request: roll its transaction back, then read the signed-in staff member again
    (the rollback expired the row, and the page about to be rendered shows who is signed in, where no lazy load
    may run)."""
    await db.rollback()
    staff = request.state.staff_viewer.staff
    if staff in db:
        await db.refresh(staff)
