"""Staff see and remove a customer's devices on the panel (the demo panel: real device rows, real calls):
a device not on the account is refused with nothing removed; each removal is audited."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.models import AuditLog, DemoPanelAccount, DemoPanelDevice
from app.provisioning.service import sync_subscription
from tests.admin.conftest import AdminHarness
from tests.factories import add_server, add_subscriber
from tests.web import drain_outbox, htmx, text_of


async def test_devices_are_listed_and_removed_through_the_panel(admin: AdminHarness) -> None:
    await add_server(admin.db)
    user, sub = await add_subscriber(admin.db, 8901, ends_in=timedelta(days=10))
    await sync_subscription(admin.db, sub)
    await admin.db.commit()
    await drain_outbox(admin.app)  # the account is created on the demo panel
    panel_account = await admin.db.scalar(select(DemoPanelAccount))
    assert panel_account is not None
    admin.db.add_all(
        DemoPanelDevice(account_id=panel_account.id, hwid=hwid, platform="Android") for hwid in ("hw-a", "hw-b", "hw-c")
    )
    await admin.db.commit()

    client = await admin.browser("support")
    listed = text_of((await client.get(f"/admin/users/{user.id}/devices", headers=htmx("devices"))).text)
    assert "hw-a" in listed and "hw-b" in listed and "hw-c" in listed

    refused = await client.post(f"/admin/users/{user.id}/devices/remove", data={"hwid": "hw-zzz"}, headers=htmx())
    assert refused.status_code == 422
    removed = await client.post(f"/admin/users/{user.id}/devices/remove", data={"hwid": "hw-b"}, headers=htmx())
    assert removed.status_code == 200
    remaining = set((await admin.db.scalars(select(DemoPanelDevice.hwid))).all())
    assert remaining == {"hw-a", "hw-c"}
    cleared = await client.post(f"/admin/users/{user.id}/devices/remove", data={"all": "1"}, headers=htmx())
    assert cleared.status_code == 200
    assert (await admin.db.scalars(select(DemoPanelDevice.hwid))).all() == []

    rows = (await admin.db.scalars(select(AuditLog).where(AuditLog.action == "device.removed"))).all()
    assert [(r.before["devices"], r.after["devices"]) for r in rows] == [
        (["hw-a", "hw-b", "hw-c"], ["hw-a", "hw-c"]),
        (["hw-a", "hw-c"], []),
    ]
