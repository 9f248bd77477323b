"""/admin/broadcasts and /api/admin/broadcast: a refused form or request stores and audits nothing and names its
field; the reach shown is the segment's count on planted customers; start, pause, resume and cancel go through
the service (audited, refused from the wrong state with nothing changed); the event stream carries the figures."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import segments
from app.broadcasts.segments import Segment, SegmentKind
from app.kit.clock import utcnow
from app.models import AuditLog, Broadcast, BroadcastStatus, SubscriptionStatus
from tests.admin.conftest import AdminHarness
from tests.broadcasts.people import person, plan, reload

EN = {"accept-language": "en"}
GOOD = {"title": "Spring sale", "bodies.ru": "<b>Скидка</b> 20%", "bodies.en": "<b>Sale</b> 20% off", "segment": "all"}


async def _counts(db: AsyncSession) -> tuple[int, int]:
    await db.rollback()
    broadcasts = await db.scalar(select(func.count()).select_from(Broadcast))
    audits = await db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.entity_type == "broadcast"))
    return int(broadcasts or 0), int(audits or 0)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"title": "  "}, "title", "title must be 1"),
        ({"bodies.ru": "<b>Скидка"}, "bodies.ru", "never closed"),
        ({"bodies.ru": ""}, "bodies.ru", "default language"),
        ({"bodies.en": "a < b"}, "bodies.en", "bare '<'"),
        ({"bodies.en": '<a href="javascript:x">x</a>'}, "bodies.en", "must start with http"),
        ({"segment": "everyone"}, "segment", "unknown segment"),
        ({"segment": "plan"}, "plan_id", "needs a plan id"),
        ({"segment": "plan", "plan_id": "x1"}, "plan_id", "whole number"),
        ({"segment": "plan", "plan_id": "999999"}, "plan_id", "no plan #999999"),
        ({"language": "de"}, "language", "unknown language"),
        ({"button.url": "ftp://x"}, "button.url", "http:// or https://"),
        ({"button.text.en": "Go"}, "button.url", "needs the button's link"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at", "date and time"),
        ({"scheduled_at": "2001-01-01T10:00"}, "scheduled_at", "in the future"),
    ],
)
async def test_a_refused_form_names_its_field_and_changes_nothing(
    admin: AdminHarness, db: AsyncSession, changes: dict[str, str], field: str, message: str
) -> None:
    marketing = await admin.browser("marketing")
    before = await _counts(db)
    response = await marketing.post("/admin/broadcasts", data=GOOD | changes, headers=EN)
    assert response.status_code == 422, response.text
    # The message stands beside the field it belongs to (the form macro's id="<field>-error").
    error = re.search(rf'id="{re.escape(field)}-error"[^>]*>([^<]*)<', response.text)
    assert error is not None, f"no error beside {field}"
    assert message in error.group(1).replace("&#39;", "'").replace("&lt;", "<")
    assert await _counts(db) == before == (0, 0)


async def test_a_valid_form_creates_an_audited_draft(admin: AdminHarness, db: AsyncSession) -> None:
    marketing = await admin.browser("marketing")
    response = await marketing.post("/admin/broadcasts", data=GOOD | {"button.url": "web_app"}, headers=EN)
    assert response.status_code == 303
    broadcast = (await db.scalars(select(Broadcast))).one()
    assert response.headers["location"] == f"/admin/broadcasts/{broadcast.id}"
    assert broadcast.status == BroadcastStatus.DRAFT
    assert broadcast.bodies == {"en": "<b>Sale</b> 20% off", "ru": "<b>Скидка</b> 20%"}
    audit = (await db.scalars(select(AuditLog).where(AuditLog.entity_type == "broadcast"))).one()
    assert (audit.action, audit.actor_type, audit.actor_id) == (
        "broadcast.created",
        "staff",
        str(admin.staff["marketing"].id),
    )
    page = await marketing.get(f"/admin/broadcasts/{broadcast.id}", headers=EN)
    assert page.status_code == 200
    assert "<b>Sale</b> 20% off" in page.text  # the preview as Telegram shows it
    history = await marketing.get("/admin/broadcasts", headers=EN)
    assert f'data-broadcast="{broadcast.id}"' in history.text


async def test_the_preview_checks_each_language_as_typed(admin: AdminHarness) -> None:
    marketing = await admin.browser("marketing")
    good = await marketing.post("/admin/broadcasts/preview", data={"bodies.ru": "<i>привет</i> &amp; всё"})
    assert good.status_code == 200
    assert "<i>привет</i> &amp; всё" in good.text
    bad = await marketing.post("/admin/broadcasts/preview", data={"bodies.ru": "ok", "bodies.en": "<script>x</script>"})
    assert bad.status_code == 422
    assert 'data-testid="preview-error-en"' in bad.text
    assert "<script>" not in bad.text  # a refused body is never shown as HTML


async def test_reach_equals_the_segments_count_on_planted_customers(admin: AdminHarness, db: AsyncSession) -> None:
    basic = await plan(db, "basic")
    for _ in range(3):
        await person(db, language="ru", subscription=SubscriptionStatus.ACTIVE, plan=basic, paid=True)
    await person(db, language="en", subscription=SubscriptionStatus.ACTIVE, plan=basic, paid=True)
    await person(db, language="en", subscription=SubscriptionStatus.TRIAL)
    await person(db, language="ru", subscription=SubscriptionStatus.ACTIVE, is_blocked=True)
    await person(db, language="ru", subscription=SubscriptionStatus.ACTIVE, marketing_opt_out=True)
    await person(db, language="en", unreachable_since=utcnow() - timedelta(days=1))
    await person(db, language="ru", subscription=SubscriptionStatus.EXPIRED, ends_in=timedelta(days=-5))
    await db.commit()
    marketing = await admin.browser("marketing")
    # A trial is a live subscription too: "active" counts it.
    expected = {"all": 6, "active": 5, "trial": 1, "never_paid": 2, "expired": 1}
    for kind, number in expected.items():
        response = await marketing.get("/admin/broadcasts/reach", params={"segment": kind}, headers=EN)
        assert response.status_code == 200
        shown = int(re.search(r'data-testid="reach-total">(\d+)<', response.text).group(1))  # type: ignore[union-attr]
        counted = await segments.count(db, Segment(SegmentKind(kind)), utcnow())
        assert shown == counted == number, kind
    on_plan = await marketing.get(
        "/admin/broadcasts/reach", params={"segment": "plan", "plan_id": basic.id, "language": "en"}, headers=EN
    )
    assert re.search(r'data-testid="reach-total">1<', on_plan.text)
    refused = await marketing.get("/admin/broadcasts/reach", params={"segment": "plan"}, headers=EN)
    assert refused.status_code == 422
    assert "needs a plan id" in refused.text


async def test_start_pause_resume_cancel_are_audited_and_refused_from_the_wrong_state(
    admin: AdminHarness, db: AsyncSession
) -> None:
    await person(db, language="ru")
    await db.commit()
    marketing = await admin.browser("marketing")
    created = await marketing.post("/admin/broadcasts", data=GOOD, headers=EN)
    broadcast_id = int(created.headers["location"].rsplit("/", 1)[1])
    base = f"/admin/broadcasts/{broadcast_id}"
    wrong = await marketing.post(f"{base}/pause", headers=EN)
    assert wrong.status_code == 409
    assert "only a broadcast that is running can be paused" in wrong.text
    assert (await reload(db, broadcast_id)).status == BroadcastStatus.DRAFT
    for action, status in (
        ("start", BroadcastStatus.RUNNING),
        ("pause", BroadcastStatus.PAUSED),
        ("resume", BroadcastStatus.RUNNING),
        ("cancel", BroadcastStatus.CANCELLED),
    ):
        response = await marketing.post(f"{base}/{action}", data={"now": "1"}, headers=EN)
        assert response.status_code == 303, (action, response.text)
        assert (await reload(db, broadcast_id)).status == status
    actions = (
        await db.scalars(select(AuditLog.action).where(AuditLog.entity_id == str(broadcast_id)).order_by(AuditLog.id))
    ).all()
    assert actions == [
        "broadcast.created",
        "broadcast.started",
        "broadcast.paused",
        "broadcast.resumed",
        "broadcast.cancelled",
    ]
    again = await marketing.post(f"{base}/resume", headers=EN)
    assert again.status_code == 409
    assert (await reload(db, broadcast_id)).status == BroadcastStatus.CANCELLED


async def test_scheduling_in_the_past_is_refused_beside_the_field(admin: AdminHarness, db: AsyncSession) -> None:
    marketing = await admin.browser("marketing")
    created = await marketing.post("/admin/broadcasts", data=GOOD, headers=EN)
    broadcast_id = int(created.headers["location"].rsplit("/", 1)[1])
    response = await marketing.post(
        f"/admin/broadcasts/{broadcast_id}/start", data={"scheduled_at": "2001-05-01T10:00"}, headers=EN
    )
    assert response.status_code == 422
    assert 'id="scheduled_at-error"' in response.text
    assert (await reload(db, broadcast_id)).status == BroadcastStatus.DRAFT


async def test_test_send_needs_a_linked_telegram_account(admin: AdminHarness, db: AsyncSession) -> None:
    marketing = await admin.browser("marketing")  # the harness links only the owner's Telegram id
    created = await marketing.post("/admin/broadcasts", data=GOOD, headers=EN)
    broadcast_id = int(created.headers["location"].rsplit("/", 1)[1])
    response = await marketing.post(f"/admin/broadcasts/{broadcast_id}/test", headers=EN)
    assert response.status_code == 422
    assert "Link your Telegram account" in response.text


async def test_the_event_stream_carries_the_figures_and_ends_when_finished(
    admin: AdminHarness, db: AsyncSession
) -> None:
    marketing = await admin.browser("marketing")
    created = await marketing.post("/admin/broadcasts", data=GOOD, headers=EN)
    broadcast_id = int(created.headers["location"].rsplit("/", 1)[1])
    await marketing.post(f"/admin/broadcasts/{broadcast_id}/cancel", headers=EN)
    response = await marketing.get(f"/admin/broadcasts/{broadcast_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block.startswith("event: progress")]
    assert len(events) == 1
    figures = json.loads(events[0].split("data: ", 1)[1])
    assert figures["status"] == "cancelled"
    assert figures["finished"] is True
    assert {"sent", "failed", "blocked", "unknown", "pending"} <= figures.keys()
    missing = await marketing.get("/admin/broadcasts/999999/events")
    assert missing.status_code == 404


async def test_api_refuses_by_field_and_stores_nothing(admin: AdminHarness, db: AsyncSession) -> None:
    headers = await admin.bearer("marketing")
    body = {"title": "Sale", "bodies": {"ru": "<b>Скидка", "en": "Sale"}}
    response = await admin.client.post("/api/admin/broadcast", json=body, headers=headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["fields"] == [{"field": "bodies.ru", "message": error["message"]}]
    assert "never closed" in error["message"]
    unknown = await admin.client.post("/api/admin/broadcast", json=body | {"colour": "red"}, headers=headers)
    assert unknown.status_code == 422
    assert await _counts(db) == (0, 0)


async def test_api_creates_lists_and_changes_broadcasts(admin: AdminHarness, db: AsyncSession) -> None:
    await person(db, language="en")
    await person(db, language="ru")
    await db.commit()
    headers = await admin.bearer("marketing")
    body = {"title": "Sale", "bodies": {"ru": "Скидка", "en": "Sale"}, "start": True}
    created = await admin.client.post("/api/admin/broadcast", json=body, headers=headers)
    assert created.status_code == 201, created.text
    detail = created.json()
    assert detail["broadcast"]["status"] == "running"
    assert detail["recipients"] == 2
    broadcast_id = detail["broadcast"]["id"]
    paused = await admin.client.post(f"/api/admin/broadcast/{broadcast_id}/pause", headers=headers)
    assert paused.json()["broadcast"]["status"] == "paused"
    history = await admin.client.get("/api/admin/broadcast/history", headers=headers)
    assert [item["id"] for item in history.json()] == [broadcast_id]
    assert {"total", "sent", "failed", "skipped", "unknown"} <= history.json()[0].keys()
    support = await admin.bearer("support")
    denied = await admin.client.get("/api/admin/broadcast/history", headers=support)
    assert denied.status_code == 403
