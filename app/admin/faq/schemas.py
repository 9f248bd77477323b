"""The FAQ editor's inputs, shared by the form pages and the JSON API (lengths and patterns here; rules that
need the database in app/help/staff_actions.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"
Text300 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class CategoryIn(BaseModel):
    slug: str = Field(pattern=SLUG, description="lowercase letters, digits and dashes")
    titles: dict[str, Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]]
    sort_order: int = Field(0, ge=0, le=100_000)


class ItemIn(BaseModel):
    category_id: int = Field(gt=0, lt=2**53)
    slug: str = Field(pattern=SLUG, description="shared by the translations of one entry")
    language: str = Field(min_length=2, max_length=8)
    question: Text300
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    sort_order: int = Field(0, ge=0, le=100_000)
    is_active: bool = True


def category_form(data: Mapping[str, Any]) -> dict[str, Any]:
    """A form's flat fields (titles.ru, titles.en…) in CategoryIn's shape."""
    shaped: dict[str, Any] = {k: v for k, v in data.items() if not k.startswith("titles.")}
    shaped["titles"] = {k.removeprefix("titles."): v for k, v in data.items() if k.startswith("titles.")}
    return shaped


def item_form(data: Mapping[str, Any]) -> dict[str, Any]:
    """A form's fields in ItemIn's shape: an unticked checkbox sends nothing, which means "off"."""
    return {**{k: v for k, v in data.items()}, "is_active": data.get("is_active") in ("1", "on", "true")}
