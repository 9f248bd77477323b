"""The audit log page: filters by staff member, action (exact or prefix), entity and date in the shop's zone;
before/after as a diff; keyset pages; unreadable filters explained, not a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.admin.audit.views import diff
from app.audit.service import Actor, record_by
from tests.admin.conftest import AdminHarness
from tests.web import htmx, text_of


def test_diff_marks_each_field() -> None:
    lines = diff({"role": "support", "is_active": True, "gone": 1}, {"role": "admin", "is_active": True, "new": [1]})
    assert [(line.field, line.change) for line in lines] == [
        ("role", "changed"),
        ("is_active", "same"),
        ("gone", "removed"),
        ("new", "added"),
    ]
    assert lines[0].before == "support" and lines[0].after == "admin"
    assert lines[3].before is None and lines[3].after == "[1]"
    assert diff(None, None) == []


async def plant(admin: AdminHarness) -> dict[str, int]:
    owner, support = admin.staff["owner"], admin.staff["support"]
    ids = {"owner": owner.id, "support": support.id}
    by_owner, by_support = Actor("staff", owner.id, "10.0.0.1"), Actor("staff", support.id, "10.0.0.2")
    base = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    rows = [
        (by_owner, "user.extended", "user", 7, {"ends_at": "2026-12-10"}, {"ends_at": "2026-12-17"}, base),
        (by_support, "user.blocked", "user", 8, {"is_blocked": False}, {"is_blocked": True}, base + timedelta(days=1)),
        (by_owner, "staff.role_changed", "staff", 3, {"role": "support"}, {"role": "admin"}, base + timedelta(days=2)),
    ]
    for actor, action, entity, entity_id, before, after, at in rows:
        entry = record_by(
            admin.db, actor, action=action, entity_type=entity, entity_id=entity_id, before=before, after=after
        )
        entry.created_at = at
    await admin.db.commit()
    return ids


async def test_the_log_filters_and_shows_before_and_after(admin: AdminHarness) -> None:
    ids = await plant(admin)
    owner = await admin.browser("owner")
    everything = await owner.get("/admin/audit")
    assert everything.status_code == 200
    text = text_of(everything.text)
    assert text.index("staff.role_changed") < text.index("user.blocked") < text.index("user.extended")  # newest first
    assert 'data-change="changed"' in everything.text and "2026-12-17" in everything.text

    by_support = await owner.get(f"/admin/audit?staff={ids['support']}", headers=htmx("list"))
    assert "user.blocked" in by_support.text and "user.extended" not in by_support.text
    assert "<h1>" not in by_support.text  # only the list block for HTMX

    prefix = text_of((await owner.get("/admin/audit?action=user.")).text)
    assert "user.blocked" in prefix and "user.extended" in prefix and "staff.role_changed" not in prefix
    exact = text_of((await owner.get("/admin/audit?action=user.blocked")).text)
    assert "user.blocked" in exact and "user.extended" not in exact

    entity = text_of((await owner.get("/admin/audit?entity_type=user&entity_id=7")).text)
    assert "user.extended" in entity and "user.blocked" not in entity

    # Dates are the shop's (Europe/Moscow): 2 December covers 21:00 UTC on the 1st to 21:00 UTC on the 2nd.
    day = text_of((await owner.get("/admin/audit?from=2026-12-02&to=2026-12-02")).text)
    assert "user.blocked" in day and "user.extended" not in day and "staff.role_changed" not in day


async def test_keyset_pages_cover_every_row_once(admin: AdminHarness) -> None:
    await plant(admin)
    owner = await admin.browser("owner")
    first = await owner.get("/admin/audit?limit=2", headers=htmx("list"))
    assert first.text.count('class="card audit-row"') == 2
    next_url = first.text.split('rel="next"')[0].rsplit('hx-get="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = await owner.get(next_url, headers=htmx("list"))
    assert second.text.count('class="card audit-row"') >= 1
    assert "user.extended" in second.text and "staff.role_changed" not in second.text


async def test_unreadable_filters_are_explained(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    for query, message in [
        ("from=31.12.2026", "Expected a date like 2026-12-31."),
        ("staff=bob", "Choose a staff member from the list."),
        ("from=2026-12-05&to=2026-12-01", "The end date is before the start date."),
    ]:
        response = await owner.get(f"/admin/audit?{query}")
        assert response.status_code == 422, query
        assert message in response.text, query
    assert (await owner.get("/admin/audit?cursor=garbage")).status_code == 422
    assert (await owner.get("/admin/audit?sort=ip")).status_code == 422


async def test_support_may_not_read_the_log(admin: AdminHarness) -> None:
    support = await admin.browser("support")
    assert (await support.get("/admin/audit", headers={"accept": "application/json"})).status_code == 403
