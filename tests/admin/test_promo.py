"""The promo editor (/admin/promo and /api/admin/promo): codes created, edited and deactivated with audit rows
(before and after); every bad input refused with its field named and nothing changed; redemptions listed with
the customer and the payment, and each code's revenue and discount."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    AuditLog,
    Payment,
    PaymentStatus,
    Plan,
    PromoCode,
    PromoCodeAmount,
    PromoKind,
    PromoRedemption,
    RedemptionStatus,
    User,
    promo_code_plans,
)
from tests.admin.conftest import AdminHarness
from tests.web import text_of

EN = {"accept-language": "en"}


async def add_plan(db: AsyncSession, code: str = "month") -> Plan:
    plan = Plan(code=code, name={"en": code.title(), "ru": code}, duration_days=30)
    db.add(plan)
    await db.commit()
    return plan


async def count(db: AsyncSession, model: type) -> int:
    return await db.scalar(select(func.count()).select_from(model)) or 0


def form(**values: object) -> dict[str, object]:
    base: dict[str, object] = {"code": "SPRING", "kind": "percent", "percent": "15", "once_per_user": "1",
                               "is_active": "1"}  # fmt: skip
    return base | values


async def test_a_code_is_created_edited_and_deactivated_with_audit_rows(admin: AdminHarness) -> None:
    plan_id = (await add_plan(admin.db)).id
    owner_id = admin.staff["owner"].id
    owner = await admin.browser("owner")
    created = await owner.post("/admin/promo", data=form(code=" spring-10 ", plan_ids=[str(plan_id)], max_uses="100"))
    assert created.status_code == 303
    promo = await admin.db.scalar(select(PromoCode))
    promo_id = promo.id
    assert created.headers["location"] == f"/admin/promo/{promo_id}"
    assert (promo.code, promo.kind, promo.percent, promo.max_uses, promo.once_per_user) == (
        "SPRING-10", PromoKind.PERCENT, Decimal(15), 100, True,
    )  # fmt: skip
    assert (await admin.db.execute(select(promo_code_plans.c.plan_id))).scalars().all() == [plan_id]
    # Edited into a fixed code in two currencies, all plans, a window, many uses per customer.
    edited = await owner.post(
        f"/admin/promo/{promo_id}",
        data=form(code="SPRING-10", kind="fixed", percent="15", amount_RUB="50", amount_USD="0.99",
                  valid_from="2026-04-01T00:00", valid_until="2026-05-01T00:00", once_per_user=""),
    )  # fmt: skip
    assert edited.status_code == 303
    admin.db.expire_all()
    promo = await admin.db.get(PromoCode, promo_id)
    assert (promo.kind, promo.percent, promo.once_per_user) == (PromoKind.FIXED, None, False)
    assert promo.valid_from == datetime(2026, 4, 1, tzinfo=UTC)
    amounts = (await admin.db.execute(select(PromoCodeAmount.currency, PromoCodeAmount.amount_minor))).all()
    assert sorted(amounts) == [("RUB", 50_00), ("USD", 99)]
    assert await count(admin.db, promo_code_plans) == 0
    deactivated = await owner.post(f"/admin/promo/{promo_id}/deactivate")
    assert deactivated.status_code == 303
    admin.db.expire_all()
    assert (await admin.db.get(PromoCode, promo_id)).is_active is False

    rows = (
        await admin.db.scalars(select(AuditLog).where(AuditLog.entity_type == "promo_code").order_by(AuditLog.id))
    ).all()
    assert [row.action for row in rows] == ["promo.create", "promo.update", "promo.deactivate"]
    assert rows[0].before is None and rows[0].after["percent"] == "15.00" and rows[0].after["plan_ids"] == [plan_id]
    assert rows[1].before["kind"] == "percent" and rows[1].after["amounts_minor"] == {"RUB": 5000, "USD": 99}
    assert (rows[2].before["is_active"], rows[2].after["is_active"]) == (True, False)
    assert rows[2].actor_id == str(owner_id)

    page = await owner.get("/admin/promo", headers=EN)
    assert page.status_code == 200 and 'data-code="SPRING-10"' in page.text and "Deactivated" in page.text


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"code": "a b"}, "code", "3 to 32 letters A–Z, digits, '-' or '_'"),
        ({"code": "AB"}, "code", "3 to 32 letters"),
        ({"percent": "0"}, "percent", "A percent must be more than 0 and less than 100."),
        ({"percent": "100"}, "percent", "A percent must be more than 0 and less than 100."),
        ({"percent": "12.345"}, "percent", "at most two decimal places"),
        ({"percent": ""}, "percent", "A percent code needs its percent."),
        ({"kind": "fixed"}, "amounts", "A fixed-amount code needs an amount in at least one currency."),
        ({"kind": "fixed", "amount_RUB": "10.005"}, "amounts", "RUB: give an amount with at most 2 decimal places."),
        ({"kind": "fixed", "amount_XTR": "1.5"}, "amounts", "XTR: give an amount with at most 0 decimal places."),
        ({"kind": "fixed", "amount_RUB": "-5"}, "amounts", "RUB: the amount must be more than zero."),
        ({"kind": "fixed", "amount_ZZZ": "5"}, "amounts", "ZZZ: not a currency we take."),
        ({"kind": "days"}, "extra_days", "A days code needs its number of days."),
        ({"kind": "days", "extra_days": "0"}, "extra_days", "greater than or equal to 1"),
        ({"kind": "bogus"}, "kind", "Input should be"),
        ({"max_uses": "0"}, "max_uses", "greater than or equal to 1"),
        ({"valid_from": "2026-05-01T00:00", "valid_until": "2026-04-01T00:00"}, "valid_until",
         "The end of the validity window must come after its start."),
        ({"valid_from": "tomorrow"}, "valid_from", "Input should be a valid datetime"),
        ({"plan_ids": ["999999"]}, "plan_ids", "No such plan: 999999."),
        ({"code": "TAKEN"}, "code", "The code TAKEN is taken by another promo code."),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_by_name_and_changes_nothing(
    admin: AdminHarness, values: dict[str, object], field: str, message: str
) -> None:
    owner = await admin.browser("owner")  # before the commit below expires the harness's staff rows
    admin.db.add(PromoCode(code="TAKEN", kind=PromoKind.DAYS, extra_days=7))
    await admin.db.commit()
    response = await owner.post("/admin/promo", data=form(**values), headers=EN)
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text
    assert message in html.unescape(text_of(response.text))
    assert await count(admin.db, PromoCode) == 1
    assert await count(admin.db, AuditLog) == 0


async def test_max_uses_cannot_go_below_the_uses_taken(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    promo = PromoCode(code="BUSY", kind=PromoKind.DAYS, extra_days=7, max_uses=10, used_count=5)
    admin.db.add(promo)
    await admin.db.flush()
    promo_id = promo.id
    await admin.db.commit()
    response = await owner.post(f"/admin/promo/{promo_id}", data=form(code="BUSY", kind="days", extra_days="7",
                                                                        max_uses="4"), headers=EN)  # fmt: skip
    assert response.status_code == 422
    assert "It has been used 5 times already: max uses cannot be lower." in text_of(response.text)
    admin.db.expire_all()
    assert (await admin.db.get(PromoCode, promo_id)).max_uses == 10


async def test_the_json_api_creates_edits_and_deactivates(admin: AdminHarness) -> None:
    headers = await admin.bearer("marketing")
    support = await admin.bearer("support")
    body = {"code": "api-5", "kind": "fixed", "amounts": {"RUB": "50.00", "XTR": "20"}, "max_uses": 1}
    created = await admin.client.post("/api/admin/promo", json=body, headers=headers)
    assert created.status_code == 201, created.text
    out = created.json()
    assert (out["code"], out["amounts"], out["max_uses"], out["is_active"]) == (
        "API-5", {"RUB": "50.00", "XTR": "20"}, 1, True,
    )  # fmt: skip
    duplicate = await admin.client.post("/api/admin/promo", json=body, headers=headers)
    assert duplicate.status_code == 422 and duplicate.json()["error"]["code"] == "invalid_code"
    bad = await admin.client.post("/api/admin/promo", json=body | {"code": "BAD-2", "amounts": {"RUB": "1.001"}},
                                  headers=headers)  # fmt: skip
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"] == [
        {"field": "amounts", "message": "Value error, RUB: give an amount with at most 2 decimal places."}
    ]
    promo_id = out["id"]
    put = await admin.client.put(
        f"/api/admin/promo/{promo_id}", json={"code": "API-5", "kind": "percent", "percent": "7.5"}, headers=headers
    )
    assert put.status_code == 200 and put.json()["percent"] == "7.50" and put.json()["amounts"] == {}
    listed = await admin.client.get("/api/admin/promo", headers=headers)
    assert [item["code"] for item in listed.json()] == ["API-5"]
    gone = await admin.client.delete(f"/api/admin/promo/{promo_id}", headers=headers)
    assert gone.status_code == 200 and gone.json()["is_active"] is False
    assert (await admin.client.delete("/api/admin/promo/999999", headers=headers)).status_code == 404
    assert (await admin.client.get("/api/admin/promo", headers=support)).status_code == 403
    assert await count(admin.db, PromoCode) == 1
    actions = (await admin.db.scalars(select(AuditLog.action).where(AuditLog.entity_type == "promo_code"))).all()
    assert sorted(actions) == ["promo.create", "promo.deactivate", "promo.update"]


async def test_redemptions_are_listed_with_revenue_and_discount(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    owner_api = await admin.bearer("owner")
    promo = PromoCode(code="HALF", kind=PromoKind.PERCENT, percent=Decimal(50), used_count=3)
    anna = User(telegram_id=501, username="anna", referral_code="ra")
    boris = User(telegram_id=502, referral_code="rb")
    admin.db.add_all([promo, anna, boris])
    await admin.db.flush()
    when = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def payment(key: str, user: User, amount: int, currency: str, status: PaymentStatus, price: int) -> Payment:
        row = Payment(public_id=key, user_id=user.id, provider="demo", amount_minor=amount, currency=currency,
                      status=status, idempotency_key=key, days=30, promo_code_id=promo.id,
                      details={"price_minor": price, "promo_code": "HALF"}, paid_at=when,
                      refunded_at=when if status == PaymentStatus.REFUNDED else None,
                      refunded_minor=amount if status == PaymentStatus.REFUNDED else 0)  # fmt: skip
        admin.db.add(row)
        return row

    paid = payment("pay-anna", anna, 100_00, "RUB", PaymentStatus.SUCCEEDED, 200_00)
    refunded = payment("pay-boris", boris, 50, "XTR", PaymentStatus.REFUNDED, 100)
    open_checkout = payment("pay-open", boris, 100_00, "RUB", PaymentStatus.PENDING, 200_00)
    await admin.db.flush()
    admin.db.add_all(
        [
            PromoRedemption(promo_code_id=promo.id, user_id=anna.id, payment_id=paid.id,
                            status=RedemptionStatus.REDEEMED),
            PromoRedemption(promo_code_id=promo.id, user_id=boris.id, payment_id=refunded.id,
                            status=RedemptionStatus.REDEEMED, once_per_user=False),
            PromoRedemption(promo_code_id=promo.id, user_id=boris.id, payment_id=open_checkout.id,
                            status=RedemptionStatus.HELD, once_per_user=False),
        ]
    )  # fmt: skip
    promo_id = promo.id  # flushed above
    await admin.db.commit()
    page = await owner.get(f"/admin/promo/{promo_id}", headers=EN)
    assert page.status_code == 200
    redemptions = text_of(page.text.split('id="redemptions"')[1])
    assert "@anna" in redemptions and "pay-anna" in redemptions and "redeemed" in redemptions
    assert "502" in redemptions and "pay-boris" in redemptions and "pay-open" in redemptions
    assert "held (checkout open)" in redemptions
    # Revenue: Anna's 100 ₽; Boris's 50 Stars were refunded (0); the open checkout is not money. Discount: 100 ₽
    # off Anna's 200 ₽ and 50 Stars off Boris's 100 (a refund does not undo the discount given).
    listed = text_of((await owner.get("/admin/promo", headers=EN)).text)
    assert "HALF Percent −50 % 3 / ∞ 2 ₽100 · 0 ★ ₽100 · 50 ★ Active" in listed
    api = await admin.client.get("/api/admin/promo", headers=owner_api)
    item = api.json()[0]
    assert (item["revenue_minor"], item["discount_minor"]) == ({"RUB": 100_00, "XTR": 0}, {"RUB": 100_00, "XTR": 50})
