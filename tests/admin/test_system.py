"""/admin/system: job runs with their failures, the outbox by topic with its dead messages, "retry now" (which
the dispatcher then delivers), and backups (made by the worker's job, downloaded by owners only)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.backups.service import make_backup
from app.config import Settings
from app.kit.clock import utcnow
from app.models import AuditLog, JobRun, OutboxMessage, OutboxStatus, PanelKind, WebhookReceipt
from app.notifications.service import STAFF_TOPIC
from tests.admin.conftest import AdminHarness
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, drain_outbox, htmx


@pytest.fixture
def admin_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, backup_dir=str(tmp_path / "backups"))


async def fresh(admin: AdminHarness) -> None:
    await admin.db.rollback()
    admin.db.expire_all()


async def dead_message(admin: AdminHarness) -> int:
    message = OutboxMessage(
        topic=STAFF_TOPIC,
        payload={"kind": "test_alert", "data": {"n": 1}, "dedupe_key": "system-page-test"},
        status=OutboxStatus.DEAD,
        attempts=50,
        last_error="TelegramError: chat not found",
    )
    admin.db.add(message)
    await admin.db.commit()
    return message.id


async def test_the_page_shows_jobs_outbox_and_dead_messages_with_their_reason(admin: AdminHarness) -> None:
    now = utcnow()
    admin.db.add_all(
        [
            JobRun(
                job_name="sync_panels",
                started_at=now - timedelta(hours=2),
                finished_at=now,
                outcome="failed",
                error="panel down",
            ),
            JobRun(job_name="sync_panels", started_at=now - timedelta(minutes=1), finished_at=now, outcome="ok"),
            JobRun(
                job_name="send_expiry_reminders", started_at=now - timedelta(seconds=3), finished_at=now, outcome="ok"
            ),
        ]
    )
    await admin.db.commit()
    await dead_message(admin)
    owner = await admin.browser("owner")
    owner.headers["accept-language"] = "en"
    page = await owner.get("/admin/system")
    assert page.status_code == 200
    assert 'data-job="sync_panels"' in page.text and "panel down" in page.text
    assert 'data-topic="notify.staff"' in page.text
    assert "chat not found" in page.text and "Retry now" in page.text
    support = await admin.browser("support")
    assert (await support.get("/admin/system", headers={"accept": "application/json"})).status_code == 403


async def test_retry_from_the_system_page_gets_a_dead_message_delivered(admin: AdminHarness) -> None:
    message_id = await dead_message(admin)
    owner = await admin.browser("admin")  # admins hold system:manage
    retried = await owner.post(f"/admin/system/outbox/{message_id}/retry", headers=htmx())
    assert retried.status_code == 200
    await drain_outbox(admin.app)
    await fresh(admin)
    message = await admin.db.get(OutboxMessage, message_id)
    assert message is not None and message.status == OutboxStatus.DONE
    (audit,) = await admin.db.scalars(select(AuditLog).where(AuditLog.action == "outbox.retry"))
    assert audit.before["status"] == "dead" and audit.after == {"status": "pending", "attempts": 0}
    again = await owner.post(f"/admin/system/outbox/{message_id}/retry", headers=htmx())
    assert again.status_code == 409  # delivered already: nothing to retry
    missing = await owner.post("/admin/system/outbox/999999/retry", headers=htmx())
    assert missing.status_code == 404


async def test_backups_are_listed_and_only_owners_download_them(admin: AdminHarness) -> None:
    backup = await make_backup(admin.settings)
    owner = await admin.browser("owner")
    page = await owner.get("/admin/system")
    assert f'data-backup="{backup.path.name}"' in page.text
    downloaded = await owner.get(f"/admin/system/backups/{backup.path.name}")
    assert downloaded.status_code == 200 and len(downloaded.content) == backup.size
    admin_member = await admin.browser("admin")
    refused = await admin_member.get(
        f"/admin/system/backups/{backup.path.name}", headers={"accept": "application/json"}
    )
    assert refused.status_code == 403
    assert (await owner.get("/admin/system/backups/..%2F..%2Fetc%2Fpasswd")).status_code in (404, 422)
    assert (await owner.get("/admin/system/backups/nothing-here.sqlite3")).status_code == 404
    await fresh(admin)
    assert [row.action for row in await admin.db.scalars(select(AuditLog).where(AuditLog.action.like("backup.%")))] == [
        "backup.download"
    ]


async def test_panel_webhooks_are_recorded_accepted_or_refused_with_the_reason(admin: AdminHarness) -> None:
    from tests.factories import add_server

    server = await add_server(
        admin.db, "mz-1", PanelKind.MARZBAN, api_url="https://mz.example", settings={"webhook_secret": "s3cret"}
    )
    await admin.db.commit()
    owner = await admin.browser("owner")
    owner.headers["accept-language"] = "en"
    server_id = server.id
    path = f"/api/panels/webhook/{server_id}"
    refused = await admin.client.post(path, json=[], headers={"x-webhook-secret": "wrong"})
    assert refused.status_code == 401
    accepted = await admin.client.post(path, json=[], headers={"x-webhook-secret": "s3cret"})
    assert accepted.status_code == 200
    await fresh(admin)
    rows = list(await admin.db.scalars(select(WebhookReceipt).order_by(WebhookReceipt.id)))
    assert [(r.source, r.sender, r.verdict, r.status_code) for r in rows] == [
        ("panel", str(server_id), "refused", 401),
        ("panel", str(server_id), "accepted", 200),
    ]
    assert rows[0].reason == "x-webhook-secret is wrong"
    page = await owner.get("/admin/system")
    assert "x-webhook-secret is wrong" in page.text and "refused" in page.text
