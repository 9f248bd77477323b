"""Before/after of an audit row as a diff: one line per field, marked added, removed, changed or unchanged."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Change = Literal["added", "removed", "changed", "same"]
MISSING = object()


@dataclass(frozen=True, slots=True)
class DiffLine:
    field: str
    change: Change
    before: str | None
    after: str | None


def _show(value: Any) -> str | None:
    if value is MISSING:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[DiffLine]:
    """Fields in the order they first appear (before's, then after's new ones); nested values compared whole."""
    before, after = before or {}, after or {}
    lines = []
    for field in [*before, *(key for key in after if key not in before)]:
        old, new = before.get(field, MISSING), after.get(field, MISSING)
        if old is MISSING:
            change: Change = "added"
        elif new is MISSING:
            change = "removed"
        elif old == new:
            change = "same"
        else:
            change = "changed"
        lines.append(DiffLine(field, change, _show(old), _show(new)))
    return lines
