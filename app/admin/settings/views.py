"""What /admin/settings shows: the registry's entries grouped as ADMIN.md lists them, each value as its form
text beside its env default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.runtime_settings.registry import GROUPS
from app.runtime_settings.service import Entry


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    kind: str
    value: str
    default: str
    overridden: bool
    minimum: int
    maximum: int


def row(entry: Entry, form: dict[str, Any] | None = None) -> Row:
    definition = entry.definition
    shown = definition.text(entry.value)
    if form is not None and definition.key in form:
        shown = str(form[definition.key])  # what the person typed, shown again next to its error
    return Row(
        definition.key,
        definition.kind,
        shown,
        ("on" if entry.default else "off") if definition.kind == "bool" else definition.text(entry.default),
        entry.overridden,
        definition.minimum,
        definition.maximum,
    )


def grouped(entries: list[Entry], form: dict[str, Any] | None = None) -> list[tuple[str, list[Row]]]:
    return [(group, [row(e, form) for e in entries if e.definition.group == group]) for group in GROUPS]


def as_json(entry: Entry) -> dict[str, Any]:
    definition = entry.definition
    return {
        "key": definition.key,
        "type": definition.kind,
        "group": definition.group,
        "value": definition.stored(entry.value),
        "default": definition.stored(entry.default),
        "overridden": entry.overridden,
        "minimum": definition.minimum if definition.kind in ("int", "days", "chat", "topic") else None,
        "maximum": definition.maximum if definition.kind in ("int", "days", "chat", "topic", "milestones") else None,
        "updated_at": entry.updated_at.isoformat() if entry.updated_at else None,
    }
