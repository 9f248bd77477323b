"""/admin/settings and /api/admin/settings: bad values refused with the field named and nothing stored; a
change audited before/after; another app instance on the same database (as another process would) uses the
new value at its next request, without a restart."""

from __future__ import annotations

import html
from typing import Any

from sqlalchemy import func, select

from app.models import AuditLog, SystemSetting
from tests.admin.conftest import AdminHarness
from tests.web import eventually, htmx, serve, text_of, tma


async def fresh(admin: AdminHarness) -> None:
    await admin.db.rollback()
    admin.db.expire_all()


async def stored_count(admin: AdminHarness) -> int:
    await fresh(admin)
    return await admin.db.scalar(select(func.count()).select_from(SystemSetting)) or 0


async def form_values(admin: AdminHarness) -> dict[str, str]:
    """The form as the page fills it (every key, each value as its text)."""
    headers = await admin.bearer("owner")
    items = (await admin.client.get("/api/admin/settings", headers=headers)).json()["items"]
    values: dict[str, str] = {}
    for item in items:
        value = item["value"]
        if item["type"] == "milestones":
            values[item["key"]] = ", ".join(f"{count}:{days}" for count, days in value)
        elif item["type"] == "days":
            values[item["key"]] = ", ".join(str(day) for day in value)
        elif isinstance(value, bool):
            values[item["key"]] = "1" if value else ""
        else:
            values[item["key"]] = "" if value is None else str(value)
    return values


async def test_the_page_lists_every_setting_with_its_default(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    owner.headers["accept-language"] = "en"
    page = await owner.get("/admin/settings")
    assert page.status_code == 200
    for name in ("trial_days", "referral_milestones", "reminder_days", "support_username", "staff_alert_chat_id"):
        assert f'name="{name}"' in page.text
    assert "default: 7" in text_of(page.text)  # trial_days' env default


async def test_bad_values_are_refused_by_the_form_next_to_their_field_and_nothing_is_saved(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    owner.headers["accept-language"] = "en"
    good = await form_values(admin)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"trial_days": "abc"}, "trial_days", "Expected a whole number"),
        ({"trial_days": "400"}, "trial_days", "Must be between 0 and 365"),
        ({"checkout_ttl_minutes": "5"}, "checkout_ttl_minutes", "Must be between 15 and 1440"),
        ({"referral_milestones": "3-30"}, "referral_milestones", '"count:days" pair'),
        ({"referral_milestones": "3:30, 3:40"}, "referral_milestones", "given twice"),
        ({"reminder_days": "3, 3"}, "reminder_days", "only once"),
        ({"reminder_days": "30"}, "reminder_days", "between 1 and 14"),
        ({"support_username": "no spaces please"}, "support_username", "Telegram username"),
        ({"reporting_currency": "XXX"}, "reporting_currency", "Expected one of"),
        ({"staff_alert_chat_id": "chat"}, "staff_alert_chat_id", "Telegram id"),
        # A good change beside a bad one is not saved either.
        ({"trial_days": "9", "auto_renew_default": "maybe"}, "auto_renew_default", "true or false"),
    ]
    for change, field, message in cases:
        response = await owner.post("/admin/settings", data=good | change, headers=htmx())
        assert response.status_code == 422, change
        assert f'id="{field}-error"' in response.text, change
        assert message in html.unescape(text_of(response.text)), change
    assert await stored_count(admin) == 0
    assert not list(await admin.db.scalars(select(AuditLog).where(AuditLog.action == "settings.update")))


async def test_bad_values_are_refused_by_the_api_naming_the_field(admin: AdminHarness) -> None:
    headers = await admin.bearer("owner")
    for body, code in (
        ({"values": {"trial_days": -1}}, "invalid_trial_days"),
        ({"values": {"trial_days": True}}, "invalid_trial_days"),
        ({"values": {"no_such_setting": 1}}, "invalid_no_such_setting"),
        ({"values": {"trial_days": 5, "referral_milestones": {"0": 5}}}, "invalid_referral_milestones"),
        ({"reset": ["nope"]}, "invalid_nope"),
    ):
        response = await admin.client.put("/api/admin/settings", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == code, response.text
    assert (await admin.client.put("/api/admin/settings", json={"values": []}, headers=headers)).status_code == 422
    assert await stored_count(admin) == 0


async def test_a_change_is_audited_and_reset_goes_back_to_the_default(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    owner.headers["accept-language"] = "en"
    owner_id = admin.staff["owner"].id
    token = await admin.bearer("owner")
    good = await form_values(admin)
    saved = await owner.post(
        "/admin/settings", data=good | {"trial_days": "14", "reminder_days": "5,1"}, headers=htmx()
    )
    assert saved.status_code == 200 and "Settings saved." in saved.text
    await fresh(admin)
    rows = {row.key: row.value for row in await admin.db.scalars(select(SystemSetting))}
    assert rows == {"trial_days": {"v": 14}, "reminder_days": {"v": [5, 1]}}
    (audit,) = await admin.db.scalars(select(AuditLog).where(AuditLog.action == "settings.update"))
    assert audit.before == {"trial_days": 7, "reminder_days": [3, 2, 1]}
    assert audit.after == {"trial_days": 14, "reminder_days": [5, 1]}
    assert audit.actor_id == str(owner_id)

    reset = await owner.post("/admin/settings/trial_days/reset", headers=htmx())
    assert reset.status_code == 200
    await fresh(admin)
    assert {row.key for row in await admin.db.scalars(select(SystemSetting))} == {"reminder_days"}
    api = await admin.client.get("/api/admin/settings", headers=token)
    trial = next(item for item in api.json()["items"] if item["key"] == "trial_days")
    assert trial == trial | {"value": 7, "default": 7, "overridden": False}


async def test_another_instance_uses_a_change_at_its_next_request(admin: AdminHarness) -> None:
    """Two app instances on one database stand for two processes: the second was started before the change
    and is not restarted."""
    async with serve(admin.settings) as (_other_app, other):
        customer = tma(user_id=555001, language="en")
        before = await other.get("/app/help", headers=customer)
        assert before.status_code == 200 and "t.me/support" in before.text
        changed = await admin.client.put(
            "/api/admin/settings",
            json={"values": {"support_username": "@desk_team"}},
            headers=await admin.bearer("owner"),
        )
        assert changed.status_code == 200

        async def other_shows_it() -> bool:
            after = await other.get("/app/help", headers=customer)
            return "t.me/desk_team" in after.text and "t.me/support" not in after.text

        await eventually(other_shows_it)


async def test_roles_without_settings_write_cannot_change_settings(admin: AdminHarness) -> None:
    response = await admin.client.put(
        "/api/admin/settings", json={"values": {"trial_days": 1}}, headers=await admin.bearer("admin")
    )
    assert response.status_code == 403
    assert await stored_count(admin) == 0


async def test_exchange_rates_are_validated_stored_and_audited(admin: AdminHarness) -> None:
    from datetime import date
    from decimal import Decimal

    from app.models import ExchangeRate

    owner = await admin.browser("owner")
    owner.headers["accept-language"] = "en"
    token = await admin.bearer("owner")
    good = {"currency": "USD", "valid_from": "2026-12-01", "rate": "92.50"}
    cases = [
        ({"currency": "RUB"}, "currency", "reporting currency itself"),
        ({"currency": "ZZZ"}, "currency", "Expected one of"),
        ({"rate": "-1"}, "rate", "positive number"),
        ({"rate": "abc"}, "rate", "valid decimal"),
        ({"rate": "1.12345678901"}, "rate", "decimal places"),
        ({"valid_from": "2029-01-01"}, "valid_from", "more than a year ahead"),
        ({"valid_from": "yesterday"}, "valid_from", "valid date"),
    ]
    for change, field, message in cases:
        response = await owner.post("/admin/settings/rates", data=good | change, headers=htmx())
        assert response.status_code == 422, change
        assert f'id="{field}-error"' in response.text, change
        assert message in html.unescape(text_of(response.text)), (change, message)
    bad_api = await admin.client.put("/api/admin/settings/rates", json=good | {"rate": "0"}, headers=token)
    assert bad_api.status_code == 422 and bad_api.json()["error"]["code"] == "invalid_rate"
    await fresh(admin)
    assert not list(await admin.db.scalars(select(ExchangeRate)))

    saved = await owner.post("/admin/settings/rates", data=good, headers=htmx())
    assert saved.status_code == 200 and 'data-rate="USD-2026-12-01"' in saved.text
    replaced = await admin.client.put("/api/admin/settings/rates", json=good | {"rate": "93"}, headers=token)
    assert replaced.status_code == 200 and replaced.json()["rate"] == "93"
    await fresh(admin)
    (row,) = await admin.db.scalars(select(ExchangeRate))
    assert (row.currency, row.quote_currency, row.valid_from, row.rate) == (
        "USD",
        "RUB",
        date(2026, 12, 1),
        Decimal(93),
    )
    audits = list(await admin.db.scalars(select(AuditLog).where(AuditLog.action == "exchange_rate.set")))
    assert audits[0].before is None and Decimal(audits[1].before["rate"]) == Decimal("92.5")
    assert [a.after for a in audits] == [{"rate": "92.50"}, {"rate": "93"}]
