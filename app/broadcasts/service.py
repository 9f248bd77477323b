"""Broadcasts for staff: create (validated), preview, test send, start now or at a time, pause, resume, cancel,
progress. No HTTP: the CLI and the admin pages call these. Functions taking a session change state in the
caller's transaction (the caller commits) and audit every change in it.

States: draft → scheduled → running ⇄ paused → done, and cancelled from anything not finished. The sender
(sender.py) moves running → done; the dispatcher job moves scheduled → running when the time comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.broadcasts import segments
from app.broadcasts.errors import BroadcastInvalid, BroadcastNotFound, TestSendFailed, TransitionRefused
from app.broadcasts.markup import MAX_VISIBLE_LENGTH, MarkupError, check_html, visible_text
from app.broadcasts.rendering import WEB_APP, BroadcastMessage, render
from app.config import Settings
from app.db import transaction
from app.kit.clock import ensure_utc, utcnow
from app.kit.i18n import available_languages
from app.models import Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus, User
from app.telegram.api import OutcomeUnknown, TelegramError
from app.telegram.outbound import TelegramOutbound

MAX_TITLE = 255
MAX_BUTTON_TEXT = 64
RATE_WINDOW = timedelta(seconds=60)

# Which states each action may start from.
_PAUSABLE = frozenset({BroadcastStatus.RUNNING})
_RESUMABLE = frozenset({BroadcastStatus.PAUSED})
_STARTABLE = frozenset({BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED})
_CANCELLABLE = frozenset(
    {BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED, BroadcastStatus.RUNNING, BroadcastStatus.PAUSED}
)


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member (`kind="staff"`, their id), the CLI, or the system (the dispatcher)."""

    kind: str
    id: int | None = None
    ip: str | None = None


SYSTEM = Actor("system")


@dataclass
class Button:
    url: str  # an http(s) link, or "web_app" for the Mini App
    text: dict[str, str] = field(default_factory=dict)  # per language; a Mini App button has a default


@dataclass
class Draft:
    title: str
    bodies: dict[str, str]
    segment: str = segments.SegmentKind.ALL.value
    plan_id: int | None = None
    language: str | None = None
    button: Button | None = None
    is_paid: bool = False
    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class Preview:
    broadcast: Broadcast
    recipients: int
    by_language: dict[str, int]
    messages: dict[str, BroadcastMessage]  # per language: what its recipients get


@dataclass(frozen=True)
class Progress:
    status: BroadcastStatus
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    pending: int  # not yet settled (waiting or being sent)
    rate: float  # messages a second over the last minute
    eta_seconds: float | None
    started_at: datetime | None
    finished_at: datetime | None


# --- creating -----------------------------------------------------------------------------------------------


async def create(session: AsyncSession, settings: Settings, draft: Draft, actor: Actor) -> Broadcast:
    """A new draft broadcast, after checking everything Telegram and the segment need."""
    now = utcnow()
    title = draft.title.strip()
    if not 1 <= len(title) <= MAX_TITLE:
        raise BroadcastInvalid(f"the title must be 1–{MAX_TITLE} characters", field="title")
    bodies = _checked_bodies(draft.bodies, settings.default_language)
    segment = await segments.parse_segment(session, draft.segment, plan_id=draft.plan_id, language=draft.language)
    button = _checked_button(draft.button, settings.default_language)
    if draft.scheduled_at is not None and ensure_utc(draft.scheduled_at) <= now:
        raise BroadcastInvalid("the scheduled time must be in the future", field="scheduled_at")
    broadcast = Broadcast(
        title=title,
        bodies=bodies,
        button=button,
        segment=segment.as_json(),
        status=BroadcastStatus.DRAFT,
        is_paid=draft.is_paid,
        scheduled_at=ensure_utc(draft.scheduled_at) if draft.scheduled_at else None,
        created_by=actor.id if actor.kind == "staff" else None,
    )
    session.add(broadcast)
    await session.flush()
    _audit(session, actor, "broadcast.created", broadcast, before=None)
    return broadcast


def _checked_bodies(bodies: dict[str, str], default_language: str) -> dict[str, str]:
    known = available_languages()
    if unknown := sorted(set(bodies) - set(known)):
        raise BroadcastInvalid(
            f"no such language {unknown[0]!r}: expected one of {', '.join(known)}", field=f"bodies.{unknown[0]}"
        )
    if not bodies.get(default_language, "").strip():
        raise BroadcastInvalid(
            f"a text in the default language ({default_language}) is required", field=f"bodies.{default_language}"
        )
    checked: dict[str, str] = {}
    for language, body in sorted(bodies.items()):
        if not body.strip():
            continue  # an empty optional translation: that language gets the default text
        try:
            check_html(body)
        except MarkupError as exc:
            raise BroadcastInvalid(
                f"the {language} text is not valid Telegram HTML: {exc}", field=f"bodies.{language}"
            ) from None
        length = len(visible_text(body))
        if not 1 <= length <= MAX_VISIBLE_LENGTH or not visible_text(body).strip():
            raise BroadcastInvalid(
                f"the {language} text must be 1–{MAX_VISIBLE_LENGTH} characters as shown (it is {length})",
                field=f"bodies.{language}",
            )
        checked[language] = body
    return checked


def _checked_button(button: Button | None, default_language: str) -> dict[str, Any] | None:
    if button is None:
        return None
    known = available_languages()
    if unknown := sorted(set(button.text) - set(known)):
        raise BroadcastInvalid(f"no such language {unknown[0]!r} for the button text", field="button.text")
    texts = {language: text.strip() for language, text in button.text.items() if text.strip()}
    for text in texts.values():
        if len(text) > MAX_BUTTON_TEXT:
            raise BroadcastInvalid(f"a button text must be at most {MAX_BUTTON_TEXT} characters", field="button.text")
    if button.url != WEB_APP:
        parts = urlsplit(button.url)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in button.url):
            raise BroadcastInvalid("the button link must be an http:// or https:// URL, or web_app", field="button.url")
        if default_language not in texts:
            raise BroadcastInvalid(
                f"a link button needs its text in the default language ({default_language})", field="button.text"
            )
    elif texts and default_language not in texts:
        raise BroadcastInvalid(
            f"the button text needs the default language ({default_language}) too", field="button.text"
        )
    return {"text": texts, "url": button.url}


# --- reading ------------------------------------------------------------------------------------------------


async def get(session: AsyncSession, broadcast_id: int, *, lock: bool = False) -> Broadcast:
    query = select(Broadcast).where(Broadcast.id == broadcast_id)
    if lock:
        query = query.with_for_update()
    broadcast = await session.scalar(query)
    if broadcast is None:
        raise BroadcastNotFound(f"no broadcast #{broadcast_id}")
    return broadcast


async def list_broadcasts(session: AsyncSession, *, limit: int = 50) -> list[Broadcast]:
    """The newest first."""
    return list((await session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit))).all())


async def preview(session: AsyncSession, settings: Settings, broadcast_id: int) -> Preview:
    """Recipients (in total and per language) and each language's message. Before the start the segment is
    counted as it is now; once started, the audience frozen at the start."""
    broadcast = await get(session, broadcast_id)
    if broadcast.started_at is None:
        segment = segments.Segment.from_json(broadcast.segment)
        by_language = await segments.count_by_language(session, segment, utcnow())
    else:
        rows = await session.execute(
            select(User.language, func.count())
            .join(BroadcastDelivery, BroadcastDelivery.user_id == User.id)
            .where(BroadcastDelivery.broadcast_id == broadcast.id)
            .group_by(User.language)
            .order_by(func.count().desc(), User.language)
        )
        by_language = {language: int(number) for language, number in rows.all()}
    languages = sorted(set(broadcast.bodies) | set(by_language))
    messages = {language: render(broadcast, language, settings) for language in languages}
    return Preview(broadcast, sum(by_language.values()), by_language, messages)


async def progress(session: AsyncSession, settings: Settings, broadcast_id: int) -> Progress:
    """Counts, the rate over the last minute and, while sending, the time left at that rate (or the configured
    one before there is a rate)."""
    broadcast = await get(session, broadcast_id)
    now = utcnow()
    settled = broadcast.sent + broadcast.failed + broadcast.skipped + broadcast.unknown
    pending = max(0, broadcast.total - settled)
    rate = 0.0
    if broadcast.started_at is not None and broadcast.finished_at is None:
        window = min(RATE_WINDOW, now - ensure_utc(broadcast.started_at))
        recent = await session.scalar(
            select(func.count())
            .select_from(BroadcastDelivery)
            .where(
                BroadcastDelivery.broadcast_id == broadcast.id,
                BroadcastDelivery.status == DeliveryStatus.SENT,
                BroadcastDelivery.sent_at >= now - window,
            )
        )
        rate = (recent or 0) / max(window.total_seconds(), 1.0)
    eta = None
    if broadcast.status == BroadcastStatus.RUNNING and pending:
        configured = settings.telegram_paid_rate_per_second if broadcast.is_paid else settings.telegram_rate_per_second
        eta = pending / (rate or configured)
    return Progress(
        broadcast.status,
        broadcast.total,
        broadcast.sent,
        broadcast.failed,
        broadcast.skipped,
        broadcast.unknown,
        pending,
        rate,
        eta,
        broadcast.started_at,
        broadcast.finished_at,
    )


# --- test send ----------------------------------------------------------------------------------------------


async def send_test(
    sessionmaker: async_sessionmaker[AsyncSession],
    telegram: TelegramOutbound | None,
    settings: Settings,
    broadcast_id: int,
    telegram_id: int,
    actor: Actor,
    *,
    language: str | None = None,
) -> BroadcastMessage:
    """Send the broadcast to one Telegram account now, in its user's language (or `language`, or the default).
    Not a delivery: it changes no count. Sent outside any transaction, then audited."""
    if telegram is None:
        raise BroadcastInvalid("no bot is configured (BOT_TOKEN), so nothing can be sent", code="bot_not_configured")
    if language is not None and language not in available_languages():
        raise BroadcastInvalid(f"no such language {language!r}", field="language")
    async with transaction(sessionmaker) as session:
        broadcast = await get(session, broadcast_id)
        user_language = await session.scalar(select(User.language).where(User.telegram_id == telegram_id))
    message = render(broadcast, language or user_language or settings.default_language, settings)
    try:
        await telegram.send(telegram_id, message.text, reply_markup=message.reply_markup)
    except OutcomeUnknown as exc:
        raise TestSendFailed(f"no answer from Telegram, the test message may have arrived: {exc.description}") from exc
    except TelegramError as exc:
        raise TestSendFailed(f"Telegram did not take the test message: {exc.description}") from exc
    async with transaction(sessionmaker) as session:
        _audit(session, actor, "broadcast.test_sent", broadcast, before=None, extra={"telegram_id": telegram_id})
    return message


# --- state changes ------------------------------------------------------------------------------------------


async def start(
    session: AsyncSession, broadcast_id: int, actor: Actor, *, at: datetime | None = None, now: bool = False
) -> Broadcast:
    """Start now (`now=True`, or no time set), or schedule for `at` (or the time set at creation). The worker's
    dispatcher picks a running broadcast up within seconds."""
    broadcast = await _for_change(session, broadcast_id, _STARTABLE, "started")
    current = utcnow()
    when = None if now else (ensure_utc(at) if at else broadcast.scheduled_at)
    if when is not None and ensure_utc(when) <= current:
        raise BroadcastInvalid(
            f"the start time {ensure_utc(when).isoformat()} has passed: give a later time, or start it now",
            field="scheduled_at",
        )
    before = _summary(broadcast)
    if when is None:
        broadcast.status = BroadcastStatus.RUNNING
        broadcast.scheduled_at = None
    else:
        broadcast.status = BroadcastStatus.SCHEDULED
        broadcast.scheduled_at = when
    _audit(session, actor, "broadcast.started" if when is None else "broadcast.scheduled", broadcast, before)
    return broadcast


async def pause(session: AsyncSession, broadcast_id: int, actor: Actor) -> Broadcast:
    """Stop after the messages already on their way; resume continues where it stopped."""
    broadcast = await _for_change(session, broadcast_id, _PAUSABLE, "paused")
    before = _summary(broadcast)
    broadcast.status = BroadcastStatus.PAUSED
    _audit(session, actor, "broadcast.paused", broadcast, before)
    return broadcast


async def resume(session: AsyncSession, broadcast_id: int, actor: Actor) -> Broadcast:
    broadcast = await _for_change(session, broadcast_id, _RESUMABLE, "resumed")
    before = _summary(broadcast)
    broadcast.status = BroadcastStatus.RUNNING
    _audit(session, actor, "broadcast.resumed", broadcast, before)
    return broadcast


async def cancel(session: AsyncSession, broadcast_id: int, actor: Actor) -> Broadcast:
    """No more messages: every delivery still waiting is skipped (those already on their way finish)."""
    broadcast = await _for_change(session, broadcast_id, _CANCELLABLE, "cancelled")
    before = _summary(broadcast)
    skipped = await skip_waiting(session, broadcast.id, "cancelled")
    broadcast.status = BroadcastStatus.CANCELLED
    broadcast.skipped += skipped
    broadcast.finished_at = utcnow()
    _audit(session, actor, "broadcast.cancelled", broadcast, before)
    return broadcast


async def skip_waiting(session: AsyncSession, broadcast_id: int, reason: str) -> int:
    """Mark every pending delivery skipped; returns how many (the caller adds them to the broadcast's count)."""
    result = await session.execute(
        update(BroadcastDelivery)
        .where(BroadcastDelivery.broadcast_id == broadcast_id, BroadcastDelivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SKIPPED, error=reason)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def start_due(session: AsyncSession, now: datetime) -> list[int]:
    """Scheduled broadcasts whose time has come become running (the dispatcher job's first step)."""
    due = (
        await session.scalars(
            select(Broadcast)
            .where(Broadcast.status == BroadcastStatus.SCHEDULED, Broadcast.scheduled_at <= now)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for broadcast in due:
        before = _summary(broadcast)
        broadcast.status = BroadcastStatus.RUNNING
        _audit(session, SYSTEM, "broadcast.started", broadcast, before)
    return [broadcast.id for broadcast in due]


async def _for_change(
    session: AsyncSession, broadcast_id: int, allowed: frozenset[BroadcastStatus], verb: str
) -> Broadcast:
    # The row lock orders this change with the sender's own updates of the row (PostgreSQL; SQLite has one writer).
    broadcast = await get(session, broadcast_id, lock=True)
    if broadcast.status not in allowed:
        allowed_names = ", ".join(sorted(status.value for status in allowed))
        raise TransitionRefused(
            f"broadcast #{broadcast.id} is {broadcast.status.value}: only a broadcast that is {allowed_names} "
            f"can be {verb}"
        )
    return broadcast


def _summary(broadcast: Broadcast) -> dict[str, Any]:
    return {
        "title": broadcast.title,
        "status": broadcast.status.value,
        "segment": broadcast.segment,
        "is_paid": broadcast.is_paid,
        "scheduled_at": broadcast.scheduled_at.isoformat() if broadcast.scheduled_at else None,
        "languages": sorted(broadcast.bodies),
        "button": broadcast.button,
    }


def _audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    broadcast: Broadcast,
    before: dict[str, Any] | None,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        actor_type=actor.kind,
        actor_id=actor.id,
        action=action,
        entity_type="broadcast",
        entity_id=broadcast.id,
        before=before,
        after=_summary(broadcast) | (extra or {}),
        ip=actor.ip,
    )
