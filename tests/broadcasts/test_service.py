"""The broadcasts service without sending: what create refuses (with nothing written), which transitions are
allowed (others refused with nothing changed), auditing, preview, progress, and the dispatcher's start of what
is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import service
from app.broadcasts.errors import BroadcastInvalid, BroadcastNotFound, TransitionRefused
from app.broadcasts.service import Actor, Button
from app.config import Settings
from app.kit.clock import utcnow
from app.models import AuditLog, Broadcast, BroadcastDelivery, BroadcastStatus, DeliveryStatus, Staff, StaffRole
from tests.broadcasts.people import audit_actions, crowd, draft, person, plan, reload, rows
from tests.conftest import make_settings

STAFF = Actor("cli")
NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)


async def test_create_makes_an_audited_draft(db: AsyncSession, settings: Settings) -> None:
    month_id = (await plan(db, "month")).id
    staff = Staff(username="marketer", password_hash="x", role=StaffRole.MARKETING)
    db.add(staff)
    await db.flush()
    actor = Actor("staff", staff.id, "10.0.0.1")
    created = await service.create(
        db,
        settings,
        draft(segment="plan", plan_id=month_id, language="en", button=Button("web_app"), is_paid=True),
        actor,
    )
    await db.commit()
    entry = await db.scalar(select(AuditLog).where(AuditLog.entity_id == str(created.id)))
    assert (entry.actor_type, entry.actor_id, entry.ip) == ("staff", str(actor.id), "10.0.0.1")
    assert entry.after["title"] == "Spring sale" and entry.before is None
    stored = await reload(db, created.id)
    assert stored.created_by == actor.id
    assert stored.status == BroadcastStatus.DRAFT
    assert stored.segment == {"kind": "plan", "plan_id": month_id, "language": "en"}
    assert stored.button == {"text": {}, "url": "web_app"}
    assert stored.is_paid and stored.total == 0 and stored.started_at is None
    assert await audit_actions(db, created.id) == ["broadcast.created"]


LONG = "я" * 4097


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": "   "}, "title must be 1–255"),
        ({"title": "t" * 256}, "title must be 1–255"),
        ({"bodies": {"en": "Only English"}}, r"default language \(ru\) is required"),
        ({"bodies": {"ru": "Привет", "de": "Hallo"}}, "no such language 'de'"),
        ({"bodies": {"ru": "<b>Скидка"}}, "not valid Telegram HTML: <b> is never closed"),
        ({"bodies": {"ru": "Tom & Jerry"}}, "not valid Telegram HTML: '&' at character 5"),
        ({"bodies": {"ru": '<a href="javascript:alert(1)">x</a>'}}, "must start with http"),
        ({"bodies": {"ru": "<div>x</div>"}}, "<div> at character 1 is not a tag"),
        ({"bodies": {"ru": LONG}}, "must be 1–4096 characters as shown"),
        ({"bodies": {"ru": "<b> </b>"}}, "must be 1–4096 characters as shown"),
        ({"segment": "vip"}, "unknown segment 'vip'"),
        ({"segment": "plan"}, "needs a plan id"),
        ({"segment": "plan", "plan_id": 424242}, "no plan #424242"),
        ({"language": "de"}, "unknown language 'de'"),
        ({"button": Button("ftp://example.com", {"ru": "Открыть"})}, "http:// or https:// URL, or web_app"),
        ({"button": Button("https://", {"ru": "Открыть"})}, "http:// or https:// URL, or web_app"),
        ({"button": Button("https://example.com")}, "link button needs its text"),
        ({"button": Button("https://example.com", {"ru": "x" * 65})}, "at most 64 characters"),
        ({"button": Button("web_app", {"en": "Open"})}, r"needs the default language \(ru\) too"),
        ({"scheduled_at": datetime(2000, 1, 1, tzinfo=UTC)}, "scheduled time must be in the future"),
    ],
)
async def test_create_refuses_bad_input_and_writes_nothing(
    db: AsyncSession, settings: Settings, changes: dict, message: str
) -> None:
    with pytest.raises(BroadcastInvalid, match=message):
        await service.create(db, settings, draft(**changes), STAFF)
    await db.rollback()
    assert await rows(db, Broadcast) == 0
    assert await rows(db, AuditLog) == 0


async def test_a_4096_character_text_with_markup_is_accepted(db: AsyncSession, settings: Settings) -> None:
    body = "<b>" + "я" * 4096 + "</b>"  # Telegram counts the text as shown, not its tags
    created = await service.create(db, settings, draft(bodies={"ru": body}), STAFF)
    assert created.bodies == {"ru": body}


async def _in_state(db: AsyncSession, settings: Settings, status: BroadcastStatus) -> int:
    created = await service.create(db, settings, draft(), STAFF)
    created.status = status
    await db.commit()
    return created.id


ACTIONS = {
    "start": lambda db, bid: service.start(db, bid, STAFF),
    "pause": lambda db, bid: service.pause(db, bid, STAFF),
    "resume": lambda db, bid: service.resume(db, bid, STAFF),
    "cancel": lambda db, bid: service.cancel(db, bid, STAFF),
}
ALLOWED = {
    ("start", BroadcastStatus.DRAFT): BroadcastStatus.RUNNING,
    ("start", BroadcastStatus.SCHEDULED): BroadcastStatus.RUNNING,
    ("pause", BroadcastStatus.RUNNING): BroadcastStatus.PAUSED,
    ("resume", BroadcastStatus.PAUSED): BroadcastStatus.RUNNING,
    ("cancel", BroadcastStatus.DRAFT): BroadcastStatus.CANCELLED,
    ("cancel", BroadcastStatus.SCHEDULED): BroadcastStatus.CANCELLED,
    ("cancel", BroadcastStatus.RUNNING): BroadcastStatus.CANCELLED,
    ("cancel", BroadcastStatus.PAUSED): BroadcastStatus.CANCELLED,
}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("status", list(BroadcastStatus))
async def test_transitions(db: AsyncSession, settings: Settings, action: str, status: BroadcastStatus) -> None:
    broadcast_id = await _in_state(db, settings, status)
    audited = await audit_actions(db, broadcast_id)
    expected = ALLOWED.get((action, status))
    if expected is None:
        with pytest.raises(TransitionRefused, match=f"broadcast #{broadcast_id} is {status.value}"):
            await ACTIONS[action](db, broadcast_id)
        await db.rollback()
        assert (await reload(db, broadcast_id)).status == status
        assert await audit_actions(db, broadcast_id) == audited
        return
    await ACTIONS[action](db, broadcast_id)
    await db.commit()
    assert (await reload(db, broadcast_id)).status == expected
    assert len(await audit_actions(db, broadcast_id)) == len(audited) + 1


async def test_an_unknown_broadcast_is_not_found(db: AsyncSession) -> None:
    with pytest.raises(BroadcastNotFound, match="no broadcast #99"):
        await service.pause(db, 99, STAFF)


async def test_start_schedules_for_a_future_time_and_refuses_a_past_one(
    db: AsyncSession, settings: Settings, freeze
) -> None:
    freeze(NOW)
    later = NOW + timedelta(hours=2)
    scheduled_id = (await service.create(db, settings, draft(scheduled_at=later), STAFF)).id
    other_id = (await service.create(db, settings, draft(), STAFF)).id
    await db.commit()
    await service.start(db, scheduled_id, STAFF)
    await db.commit()
    stored = await reload(db, scheduled_id)
    assert (stored.status, stored.scheduled_at) == (BroadcastStatus.SCHEDULED, later)

    with pytest.raises(BroadcastInvalid, match="has passed"):
        await service.start(db, other_id, STAFF, at=NOW - timedelta(minutes=1))
    await db.rollback()
    assert (await reload(db, other_id)).status == BroadcastStatus.DRAFT

    # Starting a scheduled one now is allowed and forgets the time.
    await service.start(db, scheduled_id, STAFF, now=True)
    await db.commit()
    stored = await reload(db, scheduled_id)
    assert (stored.status, stored.scheduled_at) == (BroadcastStatus.RUNNING, None)
    assert await audit_actions(db, scheduled_id) == ["broadcast.created", "broadcast.scheduled", "broadcast.started"]


async def test_cancel_skips_what_is_still_waiting(db: AsyncSession, settings: Settings) -> None:
    users = await crowd(db, 4)
    broadcast_id = await _in_state(db, settings, BroadcastStatus.PAUSED)
    statuses = [DeliveryStatus.SENT, DeliveryStatus.PENDING, DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    db.add_all(
        BroadcastDelivery(broadcast_id=broadcast_id, user_id=user.id, status=status)
        for user, status in zip(users, statuses, strict=True)
    )
    await db.execute(update(Broadcast).where(Broadcast.id == broadcast_id).values(total=4, sent=1))
    await db.commit()
    await service.cancel(db, broadcast_id, STAFF)
    await db.commit()
    stored = await reload(db, broadcast_id)
    assert (stored.status, stored.skipped, stored.sent) == (BroadcastStatus.CANCELLED, 2, 1)
    assert stored.finished_at is not None
    # The one on its way is left to its sender, which records how it went.
    assert await rows(db, BroadcastDelivery, BroadcastDelivery.status == DeliveryStatus.SENDING) == 1


async def test_preview_counts_per_language_and_renders_each(db: AsyncSession, database_url: str) -> None:
    await crowd(db, 5)  # 3 ru, 2 en
    await person(db, language="en", marketing_opt_out=True)
    await db.commit()
    http = make_settings(database_url)
    https = make_settings(database_url, public_base_url="https://shop.example")
    created = await service.create(db, http, draft(bodies={"ru": "Привет"}, button=Button("web_app")), STAFF)
    preview = await service.preview(db, http, created.id)
    assert (preview.recipients, preview.by_language) == (5, {"ru": 3, "en": 2})
    # No English text: English speakers get the default language's, with the button in their own language.
    assert preview.messages["en"].text == "Привет"
    assert preview.messages["en"].reply_markup == {
        "inline_keyboard": [[{"text": "Open the app", "url": "http://127.0.0.1:8000/app"}]]
    }
    secure = await service.preview(db, https, created.id)
    assert secure.messages["ru"].reply_markup == {
        "inline_keyboard": [[{"text": "Открыть приложение", "web_app": {"url": "https://shop.example/app"}}]]
    }


async def test_a_link_button_keeps_its_url_and_texts(db: AsyncSession, settings: Settings) -> None:
    await crowd(db, 2)
    button = Button("https://example.com/sale", {"ru": "Купить", "en": "Buy"})
    created = await service.create(db, settings, draft(button=button), STAFF)
    preview = await service.preview(db, settings, created.id)
    assert preview.messages["en"].text == "<b>Sale</b> 20% off"
    assert preview.messages["en"].reply_markup == {
        "inline_keyboard": [[{"text": "Buy", "url": "https://example.com/sale"}]]
    }


async def test_progress_counts_rate_and_eta(db: AsyncSession, settings: Settings, freeze) -> None:
    freeze(NOW)
    users = await crowd(db, 6)
    broadcast_id = await _in_state(db, settings, BroadcastStatus.RUNNING)
    started = NOW - timedelta(seconds=30)
    db.add_all(
        BroadcastDelivery(
            broadcast_id=broadcast_id,
            user_id=user.id,
            status=DeliveryStatus.SENT if n < 3 else DeliveryStatus.PENDING,
            sent_at=NOW - timedelta(seconds=10) if n < 3 else None,
        )
        for n, user in enumerate(users)
    )
    await db.execute(
        update(Broadcast).where(Broadcast.id == broadcast_id).values(total=6, sent=3, failed=1, started_at=started)
    )
    await db.commit()
    progress = await service.progress(db, settings, broadcast_id)
    assert (progress.total, progress.sent, progress.failed, progress.pending) == (6, 3, 1, 2)
    assert progress.rate == pytest.approx(3 / 30)
    assert progress.eta_seconds == pytest.approx(2 / (3 / 30))


async def test_start_due_runs_only_what_is_due(db: AsyncSession, settings: Settings, freeze) -> None:
    clock = freeze(NOW)
    due = (await service.create(db, settings, draft(scheduled_at=NOW + timedelta(minutes=1)), STAFF)).id
    later = (await service.create(db, settings, draft(scheduled_at=NOW + timedelta(hours=1)), STAFF)).id
    await db.commit()
    for broadcast_id in (due, later):
        await service.start(db, broadcast_id, STAFF)
    await db.commit()
    clock.advance(minutes=1)
    assert await service.start_due(db, utcnow()) == [due]
    await db.commit()
    assert (await reload(db, due)).status == BroadcastStatus.RUNNING
    assert (await reload(db, later)).status == BroadcastStatus.SCHEDULED
    assert (await audit_actions(db, due))[-1] == "broadcast.started"
