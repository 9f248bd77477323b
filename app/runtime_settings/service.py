"""Reading and changing the runtime settings.

Rules that run in a transaction (checkout, referral rewards, reminders, the bot, the worker) call
`current(session, settings)`, which reads the whole `system_settings` table (a dozen rows, one query) at each
use: a change committed by any process is in force at their next use. Web pages and the request throttle read
`snapshot(...)` instead — no query on the request path; the web process's refresher (app/runtime_settings/
refresher.py) reloads it every REFRESH_SECONDS, so a page shows a change within about a second."""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.service import Actor, record_by
from app.config import Settings
from app.kit.field_errors import FieldInvalid
from app.models import SystemSetting
from app.runtime_settings.registry import BY_KEY, DEFINITIONS, Definition

REFRESH_SECONDS = 1.0
# The bot's hot path (/support) may reuse a read this young.
CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RuntimeValues:
    trial_days: int
    auto_renew_default: bool
    reminder_days: tuple[int, ...]
    support_username: str
    referral_bonus_days_referrer: int
    referral_bonus_days_referred: int
    referral_milestones: dict[int, int]
    checkout_ttl_minutes: int
    reporting_currency: str
    rate_limit_per_ip_per_minute: int
    rate_limit_per_user_per_minute: int
    staff_alert_chat_id: int | None
    staff_alert_topic_id: int | None


assert {f.name for f in fields(RuntimeValues)} == set(BY_KEY), "RuntimeValues and the registry must list the same keys"


@dataclass(frozen=True, slots=True)
class Entry:
    """One setting as the admin shows it: its value, its env default, and whether it is overridden."""

    definition: Definition
    value: Any
    default: Any
    overridden: bool
    updated_at: Any
    updated_by: int | None


def defaults(settings: Settings) -> dict[str, Any]:
    return {definition.key: definition.default(settings) for definition in DEFINITIONS}


def _overrides(rows: list[SystemSetting]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for row in rows:
        definition = BY_KEY.get(row.key)
        if definition is None:
            continue  # a key this build no longer knows
        try:
            found[row.key] = definition.loaded((row.value or {}).get("v"))
        except FieldInvalid:
            continue  # stored under other bounds: the default applies until someone saves a valid value
    return found


async def _rows(session: AsyncSession) -> list[SystemSetting]:
    keys = list(BY_KEY)
    return list((await session.scalars(select(SystemSetting).where(SystemSetting.key.in_(keys)))).all())


async def current(session: AsyncSession, settings: Settings) -> RuntimeValues:
    """The values in force now: each override, else the env default."""
    return RuntimeValues(**(defaults(settings) | _overrides(await _rows(session))))


async def entries(session: AsyncSession, settings: Settings) -> list[Entry]:
    rows = {row.key: row for row in await _rows(session)}
    overrides = _overrides(list(rows.values()))
    base = defaults(settings)
    return [
        Entry(
            definition,
            overrides.get(definition.key, base[definition.key]),
            base[definition.key],
            definition.key in overrides,
            rows[definition.key].updated_at if definition.key in rows else None,
            rows[definition.key].updated_by if definition.key in rows else None,
        )
        for definition in DEFINITIONS
    ]


def parse_changes(raw: dict[str, Any]) -> dict[str, Any]:
    """Every given key parsed; the first unknown key or bad value raises FieldInvalid naming it."""
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        definition = BY_KEY.get(key)
        if definition is None:
            raise FieldInvalid(key, f"Unknown setting {key!r}.")
        parsed[key] = definition.parse(value)
    return parsed


async def update(
    session: AsyncSession, actor: Actor, settings: Settings, raw: dict[str, Any], *, reset: tuple[str, ...] = ()
) -> RuntimeValues:
    """Validate every change first (nothing is written when one is bad), then store the changed ones and reset
    the `reset` keys to their env default; one audit row with before and after of what changed."""
    changes = parse_changes(raw)
    for key in reset:
        if key not in BY_KEY:
            raise FieldInvalid(key, f"Unknown setting {key!r}.")
    rows = {row.key: row for row in await _rows(session)}
    before_values = await current(session, settings)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    staff_id = actor.id if actor.type == "staff" and isinstance(actor.id, int) else None
    for key, value in changes.items():
        definition = BY_KEY[key]
        old = getattr(before_values, key)
        if key in rows and old == value:
            continue
        if key not in rows and old == value:
            continue  # saving the default unchanged stores nothing, so a later env change still applies
        row = rows.get(key)
        if row is None:
            row = SystemSetting(key=key, value_type=definition.kind)
            session.add(row)
        row.value, row.value_type, row.updated_by = {"v": definition.stored(value)}, definition.kind, staff_id
        before[key], after[key] = definition.stored(old), definition.stored(value)
    for key in reset:
        if key in rows and key not in changes:
            definition = BY_KEY[key]
            before[key] = definition.stored(getattr(before_values, key))
            after[key] = definition.stored(definition.default(settings))
            await session.delete(rows[key])
    if before or after:
        record_by(
            session, actor, action="settings.update", entity_type="settings", entity_id=None, before=before, after=after
        )
    await session.flush()
    return await current(session, settings)


_snapshots: weakref.WeakKeyDictionary[Any, tuple[float, RuntimeValues]] = weakref.WeakKeyDictionary()


def _engine(source: AsyncSession | async_sessionmaker[AsyncSession]) -> Any:
    """Snapshots are kept per engine (one per process and database): a page holds its session, the refresher
    and the throttle the sessionmaker, and both name the same engine."""
    return source.bind if isinstance(source, AsyncSession) else source.kw["bind"]


async def cached(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> RuntimeValues:
    """`current` read at most every CACHE_SECONDS per engine (that is, per process and database)."""
    now = time.monotonic()
    found = _snapshots.get(_engine(sessionmaker))
    if found is not None and now - found[0] < CACHE_SECONDS:
        return found[1]
    async with sessionmaker() as session:
        values = await current(session, settings)
    _snapshots[_engine(sessionmaker)] = (now, values)
    return values


async def stored(session: AsyncSession, key: str) -> Any:
    """The override of one setting, or None: for values whose default needs no env (auto_renew_default), where
    the caller holds no Settings."""
    row = await session.get(SystemSetting, key)
    if row is None:
        return None
    try:
        return BY_KEY[key].loaded((row.value or {}).get("v"))
    except FieldInvalid:
        return None


async def auto_renew_default(session: AsyncSession) -> bool:
    """Whether a new paid subscription (or a trial's first payment) starts with auto-renewal on."""
    value = await stored(session, "auto_renew_default")
    return True if value is None else bool(value)


async def refresh(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> RuntimeValues:
    """Read the values now and keep them as this sessionmaker's snapshot."""
    async with sessionmaker() as session:
        values = await current(session, settings)
    _snapshots[_engine(sessionmaker)] = (time.monotonic(), values)
    return values


def snapshot(source: AsyncSession | async_sessionmaker[AsyncSession], settings: Settings) -> RuntimeValues:
    """The refresher's last read for this session's or sessionmaker's database (no query); the env defaults
    before the first one."""
    found = _snapshots.get(_engine(source))
    return found[1] if found is not None else RuntimeValues(**defaults(settings))
