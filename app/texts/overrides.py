"""Putting staff-edited texts in force: `bind(sessionmaker)` makes the current bot update or job translate
with the `MessageText` rows of that database (one query); web requests call `use_snapshot(sessionmaker)`,
which costs no query: the web process's refresher (app/runtime_settings/refresher.py) calls `current` every
second.

Each bind asks the database for a signature of the table (row count, newest change, sum of ids: one
aggregate query) and reloads the rows only when it moved, so every process sees an edit or a reset at its
next request or job, with no time-to-live to wait out. Snapshots are kept per sessionmaker, that is per
process and database."""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.kit.i18n import OVERRIDES
from app.models import MessageText

_snapshots: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Mapping[tuple[str, str], Any]]] = (
    weakref.WeakKeyDictionary()
)


def entry_of(body: str) -> str | dict[str, str]:
    """A stored body as a catalog entry: plural texts are stored as a JSON object of their forms (the format
    app/notifications/texts.py reads too)."""
    if body.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            forms = json.loads(body)
            if isinstance(forms, dict):
                return {str(name): str(text) for name, text in forms.items()}
    return body


async def _signature(session: AsyncSession) -> tuple[Any, ...]:
    row = (
        await session.execute(
            select(func.count(MessageText.id), func.max(MessageText.updated_at), func.sum(MessageText.id))
        )
    ).one()
    return tuple(row)


async def load(session: AsyncSession) -> dict[tuple[str, str], Any]:
    rows = await session.execute(select(MessageText.language, MessageText.key, MessageText.body))
    return {(language, key): entry_of(body) for language, key, body in rows}


async def current(sessionmaker: async_sessionmaker[AsyncSession]) -> Mapping[tuple[str, str], Any]:
    async with sessionmaker() as session:
        signature = await _signature(session)
        found = _snapshots.get(sessionmaker)
        if found is not None and found[0] == signature:
            return found[1]
        texts = await load(session)
    _snapshots[sessionmaker] = (signature, texts)
    return texts


async def bind(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Translate with this database's overrides for the rest of the current task (request, update, job)."""
    OVERRIDES.set(await current(sessionmaker))


def use_snapshot(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Translate with the last texts read for this sessionmaker (none before the first read)."""
    found = _snapshots.get(sessionmaker)
    OVERRIDES.set(found[1] if found is not None else None)
