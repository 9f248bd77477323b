"""List state kept in the URL (search, filters, sort, cursor) and keyset pagination, for every admin table.

Keyset, not OFFSET: page 2000 of the customers costs the same as page 1, and rows inserted meanwhile do not
shift the pages. The cursor is the last row's (sort value, id), opaque to the client."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from fastapi import Request
from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.kit.clock import ensure_utc
from app.kit.errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT = 200


@dataclass(frozen=True)
class ListState:
    """One table's state, read from the query string and written back into every link the table renders."""

    path: str
    params: dict[str, str] = field(default_factory=dict)  # search (q) and filters; only non-empty ones
    sort: str = "id"
    desc: bool = True
    cursor: str | None = None
    limit: int = 50

    @classmethod
    def from_request(
        cls,
        request: Request,
        *,
        sorts: Sequence[str],
        default_sort: str,
        default_desc: bool = True,
        filters: Sequence[str] = (),
        limit: int = 50,
    ) -> ListState:
        """Unknown sort columns, directions and limits are refused with a clear message (a hand-edited URL),
        never silently replaced; unknown query parameters are ignored."""
        query = request.query_params
        sort = query.get("sort") or default_sort
        if sort not in sorts:
            raise ValidationFailed(f"sort: expected one of {', '.join(sorts)}")
        direction = query.get("dir") or ("desc" if default_desc else "asc")
        if direction not in ("asc", "desc"):
            raise ValidationFailed("dir: expected asc or desc")
        raw_limit = query.get("limit") or str(limit)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise ValidationFailed(f"limit: expected a whole number from 1 to {MAX_LIMIT}")
        params = {name: value.strip() for name in ("q", *filters) if (value := query.get(name, "")).strip()}
        return cls(request.url.path, params, sort, direction == "desc", query.get("cursor") or None, int(raw_limit))

    def url(self, **changes: Any) -> str:
        state = replace(self, **changes)
        query: dict[str, Any] = dict(state.params)
        query["sort"], query["dir"] = state.sort, "desc" if state.desc else "asc"
        if state.cursor:
            query["cursor"] = state.cursor
        return f"{state.path}?{urlencode(query)}"

    def sort_url(self, key: str) -> str:
        """Sorting by the current column flips its direction; a new column starts descending. Either way
        from the first page."""
        return self.url(sort=key, desc=not self.desc if key == self.sort else True, cursor=None)

    def first_url(self) -> str:
        return self.url(cursor=None)

    def next_url(self, cursor: str) -> str:
        return self.url(cursor=cursor)

    def with_filter(self, name: str, value: str | None) -> str:
        """The URL of this list with one filter set (or removed), from the first page: segment links."""
        params = {k: v for k, v in self.params.items() if k != name} | ({name: value} if value else {})
        return replace(self, params=params, cursor=None).url()


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next_cursor: str | None


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": ensure_utc(value).isoformat()}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # enums (StrEnum) and the like compare as their text


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "dt" in value:
        return ensure_utc(datetime.fromisoformat(value["dt"]))
    if isinstance(value, dict) and "dec" in value:
        return Decimal(value["dec"])
    return value


def encode_cursor(sort_value: Any, row_id: int) -> str:
    raw = json.dumps([_encode_value(sort_value), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, row_id = json.loads(raw)
        if not isinstance(row_id, int):
            raise ValueError
        return _decode_value(value), row_id
    except (ValueError, TypeError, KeyError):
        raise ValidationFailed("cursor: not a cursor this list gave out; start again from the first page") from None


async def keyset_page(
    db: AsyncSession,
    stmt: Select[Any],
    state: ListState,
    *,
    sort_column: ColumnElement[Any],
    id_column: ColumnElement[Any],
    cursor_of: Callable[[Any], tuple[Any, int]],
    scalars: bool = False,
) -> Page[Any]:
    """One page of `stmt` ordered by (sort_column, id_column) in the state's direction, after its cursor.

    `sort_column` must never be NULL (wrap a nullable one in coalesce); `cursor_of(row)` returns the row's
    (sort value, id) — the same values the ORDER BY sees. `scalars=True` for a select of one entity."""
    if state.cursor:
        value, last_id = decode_cursor(state.cursor)
        if state.desc:
            after = or_(sort_column < value, and_(sort_column == value, id_column < last_id))
        else:
            after = or_(sort_column > value, and_(sort_column == value, id_column > last_id))
        stmt = stmt.where(after)
    order = (sort_column.desc(), id_column.desc()) if state.desc else (sort_column.asc(), id_column.asc())
    stmt = stmt.order_by(*order).limit(state.limit + 1)
    result = await db.execute(stmt)
    rows = list(result.scalars() if scalars else result.all())
    if len(rows) <= state.limit:
        return Page(rows, None)
    rows = rows[: state.limit]
    return Page(rows, encode_cursor(*cursor_of(rows[-1])))
