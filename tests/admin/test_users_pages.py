"""The customers pages: the table with its URL state, the customer page and its actions (HTMX and plain forms,
inline errors, nothing changed on a refusal), CSV and Excel exports, and bulk actions whose dry run lists
exactly whom the real run changes."""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from datetime import timedelta

from sqlalchemy import select

from app.admin import exports
from app.kit.clock import utcnow
from app.models import AuditLog, BulkRun, ExportFile, JobState, OutboxMessage, Subscription, User
from app.users import bulk
from tests.admin.conftest import AdminHarness
from tests.factories import add_account, add_server, add_subscriber
from tests.web import htmx, text_of


async def _people(admin: AdminHarness) -> dict[str, tuple[User, Subscription]]:
    server = await add_server(admin.db)
    people = {}
    for i, (name, days) in enumerate((("Anna", 2), ("=cmd", 40), ("Boris", -5), ("Vera", 1))):
        user, sub = await add_subscriber(admin.db, 8100 + i, ends_in=timedelta(days=days))
        user.first_name = name
        await add_account(admin.db, server, sub)
        people[name] = (user, sub)
    await admin.db.commit()
    return people


async def _finished(admin: AdminHarness, run_id: int, within: float = 30.0) -> BulkRun:
    """The run once its job (the app's in-process runner) has finished it; a generous bound, no fixed sleep."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with admin.app.state.resources.sessionmaker() as session:
            run = await session.get_one(BulkRun, run_id)
        if run.state == JobState.DONE:
            return run
        assert asyncio.get_running_loop().time() < deadline, f"bulk run still {run.state}"
        await asyncio.sleep(0.05)


async def _staff_audit(admin: AdminHarness, action: str) -> list[AuditLog]:
    rows = await admin.db.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))
    return list(rows.all())


async def test_the_table_keeps_its_state_in_the_url_and_reports_a_bad_filter(admin: AdminHarness) -> None:
    await _people(admin)
    client = await admin.browser("support")
    page = await client.get("/admin/users", params={"segment": "expiring"})
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Anna" in shown and "Vera" in shown and "Boris" not in shown and "=cmd" not in shown
    # The pager and sort headers carry the filters along.
    assert "segment=expiring" in page.text and "sort=ends" in page.text
    by_end = await client.get("/admin/users", params={"sort": "ends"}, headers=htmx("list"))
    assert 'id="sort-note"' in by_end.text and "Boris" in text_of(by_end.text)
    found = await client.get("/admin/users", params={"search": "8102"}, headers=htmx("list"))
    assert "Boris" in text_of(found.text) and "Anna" not in text_of(found.text)
    assert "<html" not in found.text  # only the table block
    bad = await client.get("/admin/users", params={"created_from": "someday", "status": "active"})
    assert bad.status_code == 422
    assert 'role="alert"' in bad.text and "Boris" not in text_of(bad.text)  # the good filter still applies


async def test_the_customer_page_shows_every_section(admin: AdminHarness) -> None:
    people = await _people(admin)
    user, _ = people["Anna"]
    client = await admin.browser("support")
    page = await client.get(f"/admin/users/{user.id}")
    assert page.status_code == 200
    for section in (
        "profile",
        "subscription",
        "actions",
        "usage",
        "devices",
        "subscriptions",
        "payments",
        "referrals",
        "sessions",
        "notifications",
        "audit",
    ):
        assert f'id="{section}"' in page.text, section
    # Marketing may read customers but sees no actions.
    marketing = await admin.browser("marketing")
    read_only = await marketing.get(f"/admin/users/{user.id}")
    assert read_only.status_code == 200 and 'id="actions"' not in read_only.text
    assert (await client.get("/admin/users/999999")).status_code == 404


async def test_extend_by_seven_days_is_audited_and_bad_input_changes_nothing(admin: AdminHarness) -> None:
    people = await _people(admin)
    user, sub = people["Anna"]
    ends = sub.ends_at
    client = await admin.browser("support")
    for bad in ("abc", "0", "4000", ""):
        refused = await client.post(f"/admin/users/{user.id}/extend", data={"days": bad}, headers=htmx("content"))
        assert refused.status_code == 422, bad
        assert 'data-form="extend"' in refused.text and "field-error" in refused.text
    await admin.db.refresh(sub)
    assert sub.ends_at == ends and await _staff_audit(admin, "subscription.extend") == []

    done = await client.post(f"/admin/users/{user.id}/extend", data={"days": "7"}, headers=htmx("content"))
    assert done.status_code == 200 and "toast-success" in done.text
    await admin.db.refresh(sub)
    assert sub.ends_at == ends + timedelta(days=7)
    (row,) = await _staff_audit(admin, "subscription.extend")
    assert row.before["ends_at"] == ends.isoformat() and row.after["ends_at"] == sub.ends_at.isoformat()
    assert row.actor_id == str(admin.staff["support"].id) and (row.user_agent or "").startswith("python-httpx/")
    # The trail on the page shows before and after.
    trail = text_of((await client.get(f"/admin/users/{user.id}")).text)
    assert "subscription.extend" in trail and ends.isoformat() in trail and sub.ends_at.isoformat() in trail
    # Without HTMX: a redirect back to the page.
    plain = await client.post(f"/admin/users/{user.id}/extend", data={"days": "1"}, follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"] == f"/admin/users/{user.id}"
    # ...and a refusal without HTMX is the whole page with the error beside the field.
    plain_refused = await client.post(f"/admin/users/{user.id}/extend", data={"days": "abc"})
    assert plain_refused.status_code == 422 and "field-error" in plain_refused.text


async def test_block_message_and_the_other_actions_through_the_page(admin: AdminHarness) -> None:
    people = await _people(admin)
    user, sub = people["Vera"]
    client = await admin.browser("admin")
    refused = await client.post(f"/admin/users/{user.id}/block", data={"reason": " "}, headers=htmx("content"))
    assert refused.status_code == 422 and 'data-form="block"' in refused.text
    await admin.db.refresh(user)
    assert not user.is_blocked
    for action, data in (
        ("block", {"reason": "chargeback"}),
        ("message", {"text": "Hello from support"}),
        ("bonus", {"days": "3"}),
        ("reissue", {}),
        ("reset-traffic", {}),
        ("cancel", {}),
    ):
        response = await client.post(f"/admin/users/{user.id}/{action}", data=data, headers=htmx("content"))
        assert response.status_code == 200, (action, response.text[-500:])
    again = await client.post(f"/admin/users/{user.id}/cancel", headers=htmx("content"))
    assert again.status_code == 409 and "form-error" in again.text
    await admin.db.refresh(user)
    await admin.db.refresh(sub)
    assert user.is_blocked and sub.status.value == "cancelled"
    topics = (await admin.db.scalars(select(OutboxMessage.topic))).all()
    assert "notify.user" in topics and "panel.revoke" in topics and "panel.reset_traffic" in topics
    support = await admin.browser("support")  # may not refund
    denied = await support.post(f"/admin/users/{user.id}/payments/1/refund", headers=htmx("content"))
    assert denied.status_code == 403


async def test_csv_export_streams_the_filtered_customers_safely(admin: AdminHarness) -> None:
    await _people(admin)
    support = await admin.browser("support")  # no `export`
    assert (await support.get("/admin/users/export.csv")).status_code == 403
    client = await admin.browser("marketing")
    response = await client.get("/admin/users/export.csv", params={"status": "active"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    body = response.content.decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.removeprefix("\ufeff"))))
    assert rows[0][:4] == ["id", "telegram_id", "username", "first_name"]
    names = sorted(row[3] for row in rows[1:])
    assert names == ["'=cmd", "Anna", "Vera"]  # the formula is neutralised, Boris (expired) filtered out
    (row,) = await _staff_audit(admin, "export.csv")
    assert row.after["rows"] == 3 and row.after["params"] == {"status": "active"}
    refused = await client.get("/admin/users/export.csv", params={"status": "rich"})
    assert refused.status_code == 422


async def test_csv_export_refuses_above_the_cap(admin: AdminHarness, monkeypatch) -> None:
    await _people(admin)
    monkeypatch.setattr(exports, "MAX_ROWS", 2)
    client = await admin.browser("owner")
    response = await client.get("/admin/users/export.csv")
    assert response.status_code == 413 and "export_too_large" in response.text
    assert await _staff_audit(admin, "export.csv") == []


async def test_excel_export_is_built_by_the_job_and_downloaded(admin: AdminHarness) -> None:
    await _people(admin)
    client = await admin.browser("owner")
    asked = await client.post("/admin/users/export.xlsx", data={"segment": "expiring"}, headers=htmx("export-status"))
    assert asked.status_code == 202
    export = await admin.db.scalar(select(ExportFile))
    assert export is not None and export.row_count == 2
    deadline = asyncio.get_running_loop().time() + 30
    while (await admin.db.get(ExportFile, export.id, populate_existing=True)).state != JobState.DONE:
        assert asyncio.get_running_loop().time() < deadline, "the Excel job did not finish"
        await asyncio.sleep(0.05)
    status = await client.get(f"/admin/users/exports/{export.id}")
    assert f"/admin/users/exports/{export.id}/download" in status.text
    download = await client.get(f"/admin/users/exports/{export.id}/download")
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as book:
        strings = book.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in book.namelist() else ""
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
    assert "Anna" in strings + sheet and "Vera" in strings + sheet and "Boris" not in strings + sheet
    other = await admin.browser("admin")  # someone else's file
    assert (await other.get(f"/admin/users/exports/{export.id}/download")).status_code == 404


async def test_a_bulk_dry_run_lists_exactly_whom_the_real_run_changes(admin: AdminHarness) -> None:
    people = await _people(admin)
    client = await admin.browser("admin")
    # Block every customer whose subscription ends within 3 days (Anna, Vera) and Boris, picked by hand: Vera is
    # blocked already, so the dry run says she is skipped.
    vera, _ = people["Vera"]
    vera.is_blocked, vera.block_reason = True, "earlier"
    await admin.db.commit()
    chosen = [people["Anna"][0].id, vera.id, people["Boris"][0].id]
    refused = await client.post(
        "/admin/users/bulk", data={"action": "block", "selected": [str(i) for i in chosen]}, headers=htmx("content")
    )
    assert refused.status_code == 422 and 'data-field="reason"' in refused.text
    assert await admin.db.scalar(select(BulkRun)) is None

    preview = await client.post(
        "/admin/users/bulk",
        data={"action": "block", "reason": "abuse", "selected": [str(i) for i in chosen]},
        headers=htmx("content"),
    )
    assert preview.status_code == 200, preview.text[-500:]
    run = await admin.db.scalar(select(BulkRun))
    assert run.state == JobState.PREVIEWED
    would_change = {int(uid) for uid, verdict in run.preview.items() if verdict == bulk.CHANGE}
    assert would_change == {people["Anna"][0].id, people["Boris"][0].id}
    assert run.preview[str(vera.id)] == "skip: already blocked"
    assert 'data-verdict="change"' in preview.text and "RUN 2" in preview.text
    # Nothing changed yet.
    assert not (await admin.db.get(User, people["Anna"][0].id)).is_blocked

    started = await client.post(f"/admin/users/bulk/{run.id}/start", headers=htmx("content"))
    assert started.status_code == 204 and started.headers["hx-redirect"] == f"/admin/users/bulk/{run.id}"
    assert (await client.post(f"/admin/users/bulk/{run.id}/start", headers=htmx("content"))).status_code == 409
    run = await _finished(admin, run.id)
    assert await bulk.run(admin.app.state.resources.sessionmaker, run.id) == JobState.DONE  # a repeat: a no-op
    changed = {int(uid) for uid, outcome in run.report.items() if outcome == "changed"}
    assert changed == would_change
    assert (run.processed, run.changed, run.skipped, run.failed) == (3, 2, 1, 0)
    blocked = set((await admin.db.scalars(select(User.id).where(User.is_blocked, User.id != vera.id))).all())
    assert blocked == would_change
    assert len(await _staff_audit(admin, "user.block")) == 2
    report = await client.get(f"/admin/users/bulk/{run.id}")
    assert "2 changed" in text_of(report.text) or "изменено 2" in text_of(report.text)


async def test_a_bulk_over_the_filter_acts_on_the_filtered_customers(admin: AdminHarness) -> None:
    people = await _people(admin)
    client = await admin.browser("admin")
    preview = await client.post(
        "/admin/users/bulk", data={"action": "extend", "days": "5", "f.segment": "expiring"}, headers=htmx("content")
    )
    assert preview.status_code == 200
    run = await admin.db.scalar(select(BulkRun))
    assert set(run.user_ids) == {people["Anna"][0].id, people["Vera"][0].id}
    assert run.params == {"days": 5} and run.source == {"filters": {"segment": "expiring"}}
    # A customer who stops matching the filter after the dry run is still the one acted on: the list is fixed.
    await client.post(f"/admin/users/bulk/{run.id}/start", headers=htmx("content"))
    await _finished(admin, run.id)
    anna_sub = await admin.db.get(Subscription, people["Anna"][1].id)
    await admin.db.refresh(anna_sub)
    assert anna_sub.ends_at > utcnow() + timedelta(days=6)


async def test_a_bulk_failure_for_one_customer_rolls_back_only_theirs(admin: AdminHarness) -> None:
    """Shortening by 35 days: the customer whose subscription would end before it started is refused and left as
    it was (its savepoint rolled back); the other is shortened; the report says which and why."""
    people = await _people(admin)
    anna, anna_sub = people["Anna"]  # ends in 2 days, started 30 days ago: -35 would end before the start
    other, other_sub = people["=cmd"]  # ends in 40 days
    anna_ends, other_ends = anna_sub.ends_at, other_sub.ends_at
    client = await admin.browser("admin")
    await client.post(
        "/admin/users/bulk",
        data={"action": "extend", "days": "-35", "selected": [str(anna.id), str(other.id)]},
        headers=htmx("content"),
    )
    run = await admin.db.scalar(select(BulkRun))
    await client.post(f"/admin/users/bulk/{run.id}/start", headers=htmx("content"))
    run = await _finished(admin, run.id)
    assert run.report[str(other.id)] == "changed"
    assert run.report[str(anna.id)].startswith("failed: ")
    assert (run.changed, run.failed) == (1, 1)
    await admin.db.refresh(anna_sub)
    await admin.db.refresh(other_sub)
    assert anna_sub.ends_at == anna_ends and other_sub.ends_at == other_ends - timedelta(days=35)
    shortened = await _staff_audit(admin, "subscription.shorten")
    assert [row.entity_id for row in shortened] == [str(other_sub.id)]
