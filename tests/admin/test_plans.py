"""Plans and prices in the admin (/admin/plans and /api/admin/plans): create, edit, reorder, archive, delete only a
never-used plan; each bad input refused with a message naming its field and nothing changed; every change audited
with before and after; a price change reaches the customers' plans API and checkout page; the editor previews the
customers' card; no write for a role without settings:write."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.models import AuditLog, PanelKind, Plan, PlanPrice
from tests.admin.conftest import AdminHarness
from tests.factories import add_server, add_subscriber
from tests.web import htmx, tma

CHANGES = (AuditLog.actor_type == "staff", AuditLog.action.like("plan.%"))

MONTH: dict[str, Any] = {
    "code": "month",
    "name": {"ru": "Месяц", "en": "Month"},
    "duration_days": 30,
    "discount_percent": "10",
    "traffic_limit_bytes": 50 * 1024**3,
    "traffic_strategy": "month",
    "panel_squads": ["default-squad"],
    "features": {"en": ["All locations", "No logs"], "ru": ["Все локации"]},
    "prices": {"RUB": "199.00", "USD": "2.99", "XTR": 150},
}


async def _audit(admin: AdminHarness) -> list[AuditLog]:
    await admin.db.rollback()
    return list((await admin.db.scalars(select(AuditLog).where(*CHANGES).order_by(AuditLog.id))).all())


async def _snapshot(admin: AdminHarness) -> list[tuple[Any, ...]]:
    await admin.db.rollback()
    plans = (await admin.db.scalars(select(Plan).order_by(Plan.id))).all()
    prices = (await admin.db.scalars(select(PlanPrice).order_by(PlanPrice.id))).all()
    return [(p.code, dict(p.name), p.duration_days, p.is_active, p.sort_order, p.device_limit) for p in plans] + [
        (row.plan_id, row.currency, row.amount_minor) for row in prices
    ]


async def test_create_read_and_edit_through_the_api_audited(admin: AdminHarness) -> None:
    owner = await admin.bearer("owner")
    created = await admin.client.post("/api/admin/plans", json=MONTH, headers=owner)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["code"] == "month" and body["is_active"] is True and body["traffic_strategy"] == "month"
    assert body["discount_percent"] == "10.00" and body["panel_squads"] == ["default-squad"]
    assert body["prices"] == [
        {"currency": "RUB", "amount_minor": 19900, "amount": "199.00"},
        {"currency": "USD", "amount_minor": 299, "amount": "2.99"},
        {"currency": "XTR", "amount_minor": 150, "amount": "150"},
    ]
    assert body["features"] == {"en": ["All locations", "No logs"], "ru": ["Все локации"]}

    plan_id = body["id"]
    changed = await admin.client.put(
        f"/api/admin/plans/{plan_id}", json={"prices": {"RUB": "249", "XTR": 200}, "duration_days": 31}, headers=owner
    )
    assert changed.status_code == 200, changed.text
    assert [(p["currency"], p["amount_minor"]) for p in changed.json()["prices"]] == [("RUB", 24900), ("XTR", 200)]
    read = await admin.client.get(f"/api/admin/plans/{plan_id}", headers=await admin.bearer("support"))
    assert read.status_code == 200 and read.json()["duration_days"] == 31

    create, update = await _audit(admin)
    assert create.action == "plan.create" and create.after["prices"] == {"RUB": 19900, "USD": 299, "XTR": 150}
    assert update.action == "plan.update" and update.actor_id == str(admin.staff["owner"].id)
    assert update.before == {"duration_days": 30, "prices": {"RUB": 19900, "USD": 299, "XTR": 150}}
    assert update.after == {"duration_days": 31, "prices": {"RUB": 24900, "XTR": 200}}
    # The same values again change nothing and write no audit row.
    again = await admin.client.put(f"/api/admin/plans/{plan_id}", json={"duration_days": 31}, headers=owner)
    assert again.status_code == 200 and len(await _audit(admin)) == 2


async def test_bad_input_is_refused_naming_the_field_and_changes_nothing(admin: AdminHarness) -> None:
    owner = await admin.bearer("owner")
    plan_id = (await admin.client.post("/api/admin/plans", json=MONTH, headers=owner)).json()["id"]
    before, audited = await _snapshot(admin), len(await _audit(admin))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"code": "Bad Code"}, "invalid_code"),
        ({"code": "currency"}, "invalid_code"),  # the address of the checkout's currency switch
        ({"code": "month"}, None),  # its own code again is fine on an edit (checked below for another plan)
        ({"name": {"ru": "Месяц", "en": ""}}, "invalid_name.en"),
        ({"name": {"ru": "x", "en": "y", "de": "z"}}, "invalid_name.de"),
        ({"duration_days": 0}, "invalid_duration_days"),
        ({"duration_days": 100000}, "invalid_duration_days"),
        ({"discount_percent": "100"}, "invalid_discount_percent"),
        ({"discount_percent": "1.234"}, "invalid_discount_percent"),
        ({"discount_percent": "lots"}, "invalid_discount_percent"),
        ({"prices": {"RUB": "1.999"}}, "invalid_prices.RUB"),
        ({"prices": {"XTR": "1.5"}}, "invalid_prices.XTR"),
        ({"prices": {"RUB": "0"}}, "invalid_prices.RUB"),
        ({"prices": {"RUB": "-5"}}, "invalid_prices.RUB"),
        ({"prices": {"GBP": "5"}}, "invalid_prices.GBP"),
        ({"prices": {}}, "invalid_prices"),
        ({"traffic_limit_bytes": 0}, "invalid_traffic_limit_bytes"),
        ({"device_limit": 3}, "invalid_device_limit"),  # no enabled server enforces one
        ({"panel_squads": ["a" * 80]}, "invalid_panel_squads"),
        ({"features": {"en": ["x" * 200]}}, "invalid_features.en"),
        # One good change beside a bad one: neither is applied.
        ({"duration_days": 60, "prices": {"RUB": "abc"}}, "invalid_prices.RUB"),
    ]
    for bad, code in cases:
        if code is None:
            continue
        response = await admin.client.put(f"/api/admin/plans/{plan_id}", json=bad, headers=owner)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == code, (bad, response.text)
    for bad in ({"traffic_strategy": "weekly"}, {"color": "red"}, {"duration_days": "thirty"}):
        response = await admin.client.put(f"/api/admin/plans/{plan_id}", json=bad, headers=owner)
        assert response.status_code == 422, bad
        assert response.json()["error"]["fields"][0]["field"] in bad
    missing = await admin.client.post("/api/admin/plans", json={"code": "week"}, headers=owner)
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "invalid_name"
    taken = await admin.client.post("/api/admin/plans", json=MONTH, headers=owner)
    assert taken.status_code == 422 and taken.json()["error"]["code"] == "invalid_code"
    assert await _snapshot(admin) == before and len(await _audit(admin)) == audited


async def test_device_limit_only_where_a_panel_enforces_it(admin: AdminHarness) -> None:
    owner = await admin.bearer("owner")
    await add_server(admin.db, "marz", PanelKind.MARZBAN)
    await admin.db.commit()
    refused = await admin.client.post("/api/admin/plans", json=MONTH | {"device_limit": 3}, headers=owner)
    assert refused.status_code == 422 and "Marzban" in refused.json()["error"]["message"]
    page = await (await admin.browser("owner")).get("/admin/plans/new")
    assert 'id="devices-not-offered"' in page.text and 'name="device_limit"' not in page.text

    await add_server(admin.db, "remna", PanelKind.REMNAWAVE)
    await admin.db.commit()
    accepted = await admin.client.post("/api/admin/plans", json=MONTH | {"device_limit": 3}, headers=owner)
    assert accepted.status_code == 201 and accepted.json()["device_limit"] == 3
    page = await (await admin.browser("owner")).get("/admin/plans/new")
    assert 'name="device_limit"' in page.text


async def test_reorder_archive_unarchive_and_delete_only_unused(admin: AdminHarness) -> None:
    owner = await admin.bearer("owner")
    ids = []
    for code in ("month", "year", "week"):
        created = await admin.client.post("/api/admin/plans", json=MONTH | {"code": code}, headers=owner)
        ids.append(created.json()["id"])
    month, year, week = ids
    for bad in ([year, month], [year, month, week, week], [year, month, 999999]):
        refused = await admin.client.put("/api/admin/plans/order", json={"order": bad}, headers=owner)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_order"
    reordered = await admin.client.put("/api/admin/plans/order", json={"order": [week, month, year]}, headers=owner)
    assert [p["code"] for p in reordered.json()] == ["week", "month", "year"]

    archived = await admin.client.post(f"/api/admin/plans/{month}/archive", headers=owner)
    assert archived.status_code == 200 and archived.json()["is_active"] is False
    twice = await admin.client.post(f"/api/admin/plans/{month}/archive", headers=owner)
    assert twice.status_code == 409
    listing = await admin.client.get("/api/admin/plans", headers=owner)
    assert [(p["code"], p["is_active"]) for p in listing.json()] == [("week", True), ("year", True), ("month", False)]
    customers = await admin.client.get("/api/plans", headers=tma(language="en"))
    assert [p["code"] for p in customers.json()] == ["week", "year"]

    # A plan somebody subscribed to is archived, never deleted.
    _, subscription = await add_subscriber(admin.db, 5001)
    subscription.plan_id = year
    await admin.db.commit()
    in_use = await admin.client.delete(f"/api/admin/plans/{year}", headers=owner)
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "plan_in_use"
    assert (await admin.client.delete(f"/api/admin/plans/{week}", headers=owner)).status_code == 204
    assert (await admin.client.get(f"/api/admin/plans/{week}", headers=owner)).status_code == 404
    await admin.db.rollback()
    assert await admin.db.scalar(select(func.count()).select_from(PlanPrice).where(PlanPrice.plan_id == week)) == 0

    back = await admin.client.post(f"/api/admin/plans/{month}/unarchive", headers=owner)
    assert back.status_code == 200 and back.json()["is_active"] is True
    actions = [row.action for row in await _audit(admin)]
    assert actions[3:] == ["plan.reorder", "plan.archive", "plan.delete", "plan.unarchive"]


async def test_roles_without_settings_write_cannot_change_plans(admin: AdminHarness) -> None:
    owner = await admin.bearer("owner")
    plan_id = (await admin.client.post("/api/admin/plans", json=MONTH, headers=owner)).json()["id"]
    before = await _snapshot(admin)
    staff_admin = await admin.bearer("admin")
    assert (await admin.client.get("/api/admin/plans", headers=staff_admin)).status_code == 200
    for method, path, body in (
        ("post", "/api/admin/plans", MONTH | {"code": "other"}),
        ("put", f"/api/admin/plans/{plan_id}", {"duration_days": 7}),
        ("post", f"/api/admin/plans/{plan_id}/archive", None),
        ("delete", f"/api/admin/plans/{plan_id}", None),
    ):
        response = await admin.client.request(method, path, json=body, headers=staff_admin)
        assert response.status_code == 403, path
    browser = await admin.browser("admin")
    page = await browser.get("/admin/plans")
    assert page.status_code == 200 and "/admin/plans/new" not in page.text
    assert (await browser.post(f"/admin/plans/{plan_id}", data={"duration_days": "7"})).status_code == 403
    assert await _snapshot(admin) == before


def _form(**changes: str) -> dict[str, str]:
    form = {
        "code": "month",
        "name_ru": "Месяц",
        "name_en": "Month",
        "duration_days": "30",
        "discount_percent": "0",
        "traffic_limit_gb": "",
        "traffic_strategy": "no_reset",
        "panel_squads": "",
        "features_en": "Fast\nPrivate",
        "features_ru": "Быстро",
        "price_RUB": "199",
        "price_XTR": "150",
    }
    return form | changes


async def test_the_editor_refuses_inline_and_a_price_change_reaches_checkout(admin: AdminHarness) -> None:
    browser = await admin.browser("owner")
    created = await browser.post("/admin/plans", data=_form())
    assert created.status_code == 303
    plan_id = int(created.headers["location"].rsplit("/", 1)[1])
    before, audited = await _snapshot(admin), len(await _audit(admin))

    for changes, field in (
        ({"price_RUB": "1.999"}, "price_RUB"),
        ({"price_XTR": "2.5"}, "price_XTR"),
        ({"name_en": ""}, "name_en"),
        ({"traffic_limit_gb": "lots"}, "traffic_limit_gb"),
        ({"duration_days": "0"}, "duration_days"),
        ({"price_RUB": "", "price_XTR": ""}, "prices"),
    ):
        refused = await browser.post(f"/admin/plans/{plan_id}", data=_form(**changes), headers=htmx())
        assert refused.status_code == 422, changes
        assert f'id="{field}-error"' in refused.text or (field == "prices" and "field-error" in refused.text), changes
        # The form comes back with what was typed.
        typed = next(iter(changes.values()))
        if typed:
            assert f'value="{typed}"' in refused.text
    # Without HTMX the whole page comes back, the error in place.
    plain = await browser.post(f"/admin/plans/{plan_id}", data=_form(duration_days="0"))
    assert plain.status_code == 422 and 'id="duration_days-error"' in plain.text and "admin-nav" in plain.text
    assert await _snapshot(admin) == before and len(await _audit(admin)) == audited

    saved = await browser.post(
        f"/admin/plans/{plan_id}", data=_form(price_RUB="249.50", traffic_limit_gb="100"), headers=htmx()
    )
    assert saved.status_code == 200 and 'id="preview"' in saved.text
    # The preview is checkout's own card, in each language, with the new price and the feature lines.
    assert "249,50" in saved.text and "✓ Private" in saved.text and "✓ Быстро" in saved.text

    plans = (await admin.client.get("/api/plans", headers=tma(language="ru"))).json()
    (month,) = plans
    assert [(p["currency"], p["amount_minor"]) for p in month["prices"]] == [("RUB", 24950), ("XTR", 150)]
    assert month["traffic_limit_bytes"] == 100 * 1024**3
    page = await admin.client.get("/app/checkout", headers=tma(language="ru") | htmx())
    assert page.status_code == 200 and "249,50" in page.text and "✓ Быстро" in page.text
    listing = await browser.get("/admin/plans")
    assert "249,50" in listing.text


async def test_list_actions_from_the_page(admin: AdminHarness) -> None:
    browser = await admin.browser("owner")
    for code in ("month", "year"):
        assert (await browser.post("/admin/plans", data=_form(code=code))).status_code == 303
    await admin.db.rollback()
    month, year = (await admin.db.scalars(select(Plan).order_by(Plan.id))).all()
    moved = await browser.post(f"/admin/plans/{year.id}/move", data={"step": "-1"}, headers=htmx())
    assert moved.status_code == 200
    assert moved.text.index('data-plan="year"') < moved.text.index('data-plan="month"')
    bad = await browser.post(f"/admin/plans/{year.id}/move", data={"step": "7"}, headers=htmx())
    assert bad.status_code == 422 and 'id="plans-error"' in bad.text
    plain = await browser.post(f"/admin/plans/{year.id}/move", data={"step": "7"})
    assert plain.status_code == 422 and 'id="plans-error"' in plain.text
    assert (await browser.post("/admin/plans/999999/archive")).status_code == 404
    archived = await browser.post(f"/admin/plans/{month.id}/archive", headers=htmx())
    assert archived.status_code == 200 and 'id="archived"' in archived.text
    again = await browser.post(f"/admin/plans/{month.id}/archive", headers=htmx())
    assert again.status_code == 409 and "already archived" in again.text
    assert (await browser.post(f"/admin/plans/{month.id}/delete")).status_code == 303
    await admin.db.rollback()
    assert [p.code for p in (await admin.db.scalars(select(Plan))).all()] == ["year"]
