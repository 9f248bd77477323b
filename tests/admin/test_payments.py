"""The payments list, one payment's page, the CSV export and the JSON API: filters pick exactly their payments,
keyset pages cover every payment once, mismatches stand out, bad filters are refused by name, and each route
answers only the roles whose permissions cover it."""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import FrozenClock
from app.models import AuditLog, ExportFile, JobState, Payment, PaymentEvent, PaymentStatus, User
from tests.admin.conftest import AdminHarness
from tests.web import text_of

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
EN = {"accept-language": "en"}


@pytest.fixture(autouse=True)
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(NOW)


async def _pay(db: AsyncSession, user: User, key: str, amount_minor: int, currency: str, status: PaymentStatus,
               *, provider: str = "yookassa", hours_ago: int = 0, **extra: object) -> Payment:  # fmt: skip
    payment = Payment(
        public_id=f"0000{key}-aaaa-bbbb-cccc-dddddddddddd",
        user_id=user.id,
        provider=provider,
        amount_minor=amount_minor,
        currency=currency,
        status=status,
        external_id=f"ext-{key}",
        idempotency_key=f"idem-{key}",
        days=30,
        created_at=NOW - timedelta(hours=hours_ago),
        **extra,
    )
    db.add(payment)
    await db.flush()
    return payment


RECEIPT = {"number": "0000P1", "price_minor": 249_00, "discount_minor": 50_00, "total_minor": 199_00, "currency": "RUB"}


async def _shop(db: AsyncSession) -> dict[str, Payment]:
    ann = User(telegram_id=111, username="ann", first_name="Ann", referral_code="ann")
    evil = User(telegram_id=222, username="=cmd", first_name="=HYPERLINK(1)", referral_code="evil")
    db.add_all([ann, evil])
    await db.flush()
    payments = {
        "p1": await _pay(db, ann, "p1", 199_00, "RUB", PaymentStatus.SUCCEEDED, hours_ago=5,
                         paid_at=NOW - timedelta(hours=5), receipt=RECEIPT),
        "p2": await _pay(db, ann, "p2", 500_00, "RUB", PaymentStatus.MISMATCH, hours_ago=4,
                         failure_reason="paid 400.00 RUB, expected 500.00 RUB"),
        "p3": await _pay(db, evil, "p3", 150, "XTR", PaymentStatus.SUCCEEDED, provider="stars", hours_ago=3,
                         paid_at=NOW - timedelta(hours=3)),
        "p4": await _pay(db, evil, "p4", 2_99, "USD", PaymentStatus.PENDING, provider="demo", hours_ago=2),
        "p5": await _pay(db, ann, "p5", 299_00, "RUB", PaymentStatus.REFUNDED, hours_ago=48,
                         paid_at=NOW - timedelta(hours=48), refunded_at=NOW - timedelta(hours=1)),
    }  # fmt: skip
    db.add_all(
        [
            PaymentEvent(provider="yookassa", event_id="ev-1", payment_id=payments["p2"].id, kind="payment.succeeded",
                         payload={"object": {"id": "ext-p2", "amount": {"value": "400.00", "currency": "RUB"}}},
                         received_at=NOW - timedelta(hours=4)),
            PaymentEvent(provider="yookassa", event_id="refund:r-9", payment_id=payments["p5"].id, kind="refund",
                         payload={"id": "r-9", "status": "succeeded"}, received_at=NOW - timedelta(hours=1)),
            AuditLog(actor_type="staff", actor_id="7", action="payment.refund_requested", entity_type="payment",
                     entity_id=payments["p5"].public_id, before={"status": "succeeded", "refund": None},
                     after={"status": "succeeded", "refund": "requested"}),
        ]
    )  # fmt: skip
    await db.commit()
    return payments


async def test_the_list_shows_every_payment_newest_first_with_the_mismatch_standing_out(admin: AdminHarness) -> None:
    await _shop(admin.db)
    owner = await admin.browser("owner")
    response = await owner.get("/admin/payments", headers=EN)
    assert response.status_code == 200
    page = response.text
    keys = ["p4", "p3", "p2", "p1", "p5"]
    positions = [page.index(f'href="/admin/payments/{_id}"') for _id in await _ids(admin, keys)]
    assert positions == sorted(positions)
    assert 'data-status="mismatch">⚠ mismatch' in page
    assert page.count('<tr class="mismatch">') == 1
    text = text_of(page)
    assert "₽199" in text and "150 ★" in text and "$2.99" in text


async def _ids(admin: AdminHarness, keys: list[str]) -> list[int]:
    by_key = {p.external_id: p.id for p in await admin.db.scalars(select(Payment))}
    return [by_key[f"ext-{key}"] for key in keys]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=mismatch", ["p2"]),
        ("provider=stars", ["p3"]),
        ("currency=rub", ["p2", "p1", "p5"]),
        ("search=ext-p3", ["p3"]),
        ("search=0000p1-aaaa-bbbb-cccc-dddddddddddd", ["p1"]),
        ("search=222", ["p4", "p3"]),
        ("search=@ANN", ["p2", "p1", "p5"]),
        ("created_from=2026-03-15&created_to=2026-03-15", ["p4", "p3", "p2", "p1"]),
        ("created_to=2026-03-14", ["p5"]),
        ("sort=amount&dir=desc", ["p2", "p5", "p1", "p4", "p3"]),
    ],
)
async def test_filters_and_sorts_through_the_api(admin: AdminHarness, query: str, expected: list[str]) -> None:
    await _shop(admin.db)
    headers = await admin.bearer("support")
    response = await admin.client.get(f"/api/admin/payments?{query}", headers=headers)
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == await _ids(admin, expected)


async def test_keyset_pages_cover_every_payment_once_in_each_sort(admin: AdminHarness) -> None:
    await _shop(admin.db)
    headers = await admin.bearer("owner")
    for sort in ("created", "amount"):
        for direction in ("asc", "desc"):
            seen, cursor = [], None
            while True:
                params = {"sort": sort, "dir": direction, "limit": 2} | ({"cursor": cursor} if cursor else {})
                body = (await admin.client.get("/api/admin/payments", params=params, headers=headers)).json()
                seen += [item["id"] for item in body["items"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert sorted(seen) == sorted(await _ids(admin, ["p1", "p2", "p3", "p4", "p5"])), (sort, direction)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("currency=DOGE", "currency"),
        ("status=paid", "status"),
        ("created_from=2026-03-20&created_to=2026-03-01", "__all__"),
        ("created_from=yesterday", "created_from"),
        ("provider=Robert');DROP", "provider"),
        ("sort=paid", "sort"),
    ],
)
async def test_a_bad_filter_is_named_and_lists_nothing(admin: AdminHarness, query: str, field: str) -> None:
    await _shop(admin.db)
    owner = await admin.browser("owner")
    response = await owner.get(f"/admin/payments?{query}", headers=EN)
    assert response.status_code == 422
    assert 'class="form-error"' in response.text
    assert "/admin/payments/" not in response.text.replace("/admin/payments/export.csv", "")  # no rows
    if field not in ("__all__", "sort"):  # the sort has no input of its own: the summary above the list names it
        assert f'id="{field}-error"' in response.text
    # The same filter through the API: a 422 naming the field, never a 500.
    api = await admin.client.get(f"/api/admin/payments?{query}", headers=await admin.bearer("owner"))
    assert api.status_code == 422
    assert field == "__all__" or field in api.text


async def test_htmx_filtering_swaps_only_the_list(admin: AdminHarness) -> None:
    await _shop(admin.db)
    owner = await admin.browser("owner")
    response = await owner.get(
        "/admin/payments?status=refunded", headers={"hx-request": "true", "hx-target": "list"} | EN
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="list">')
    assert "<html" not in response.text
    assert 'data-status="refunded"' in response.text and 'data-status="succeeded"' not in response.text


async def test_a_payment_page_shows_its_events_refunds_audit_and_receipt(admin: AdminHarness) -> None:
    payments = await _shop(admin.db)
    owner = await admin.browser("owner")
    mismatch = await owner.get(f"/admin/payments/{payments['p2'].id}", headers=EN)
    assert mismatch.status_code == 200
    text = text_of(mismatch.text)
    assert "does not match the order" in text and "paid 400.00 RUB, expected 500.00 RUB" in text
    assert "&#34;value&#34;: &#34;400.00&#34;" in mismatch.text or '"value": "400.00"' in mismatch.text  # the payload
    refunded = text_of((await owner.get(f"/admin/payments/{payments['p5'].public_id}", headers=EN)).text)
    assert "payment.refund_requested" in text_of(refunded) and "refund:r-9" in refunded
    receipt = text_of((await owner.get(f"/admin/payments/{payments['p1'].id}", headers=EN)).text)
    assert "Price ₽249" in receipt and "Discount ₽50" in receipt and "Total ₽199" in receipt
    assert (await owner.get("/admin/payments/999999", headers=EN)).status_code == 404
    assert (await owner.get("/admin/payments/not-a-payment", headers=EN)).status_code == 404


async def test_the_api_detail_gives_events_payloads_and_the_audit_trail(admin: AdminHarness) -> None:
    payments = await _shop(admin.db)
    headers = await admin.bearer("admin")
    by_id = await admin.client.get(f"/api/admin/payments/{payments['p5'].id}", headers=headers)
    by_public = await admin.client.get(f"/api/admin/payments/{payments['p5'].public_id}", headers=headers)
    assert by_id.status_code == by_public.status_code == 200
    body = by_id.json()
    assert body == by_public.json()
    assert (body["status"], body["amount_minor"], body["amount"], body["currency"]) == (
        "refunded",
        29900,
        "299.00",
        "RUB",
    )
    assert [event["event_id"] for event in body["events"]] == ["refund:r-9"]
    assert body["events"][0]["payload"] == {"id": "r-9", "status": "succeeded"}
    assert [row["action"] for row in body["audit"]] == ["payment.refund_requested"]
    assert (await admin.client.get("/api/admin/payments/424242", headers=headers)).status_code == 404


async def test_permissions_of_the_payments_routes(admin: AdminHarness) -> None:
    payments = await _shop(admin.db)
    assert (await admin.client.get("/api/admin/payments")).status_code == 401
    # Marketing has no payments:read; support has it but not export.
    marketing = await admin.bearer("marketing")
    assert (await admin.client.get("/api/admin/payments", headers=marketing)).status_code == 403
    assert (await admin.client.get(f"/api/admin/payments/{payments['p1'].id}", headers=marketing)).status_code == 403
    support = await admin.browser("support")
    assert (await support.get("/admin/payments")).status_code == 200
    assert "export.csv" not in (await support.get("/admin/payments")).text
    assert (await support.get("/admin/payments/export.csv")).status_code == 403


async def test_the_csv_export_streams_the_filtered_payments_neutralised_and_audited(admin: AdminHarness) -> None:
    await _shop(admin.db)
    owner = await admin.browser("owner")
    page = await owner.get("/admin/payments?currency=XTR", headers=EN)
    assert 'href="/admin/payments/export.csv?currency=XTR"' in page.text
    response = await owner.get("/admin/payments/export.csv?currency=XTR")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["id", "payment", "created_at"]
    assert len(rows) == 2
    record = dict(zip(rows[0], rows[1], strict=True))
    assert (record["amount"], record["currency"], record["status"], record["username"]) == (
        "150",
        "XTR",
        "succeeded",
        "'=cmd",
    )
    admin.db.expire_all()
    audit = await admin.db.scalar(select(AuditLog).where(AuditLog.action == "export.csv"))
    assert audit is not None and audit.after == {"kind": "payments", "params": {"currency": "XTR"}, "rows": 1}
    assert (await owner.get("/admin/payments/export.csv?currency=DOGE")).status_code == 422


async def test_the_excel_export_of_the_filtered_payments_is_built_by_the_job(admin: AdminHarness) -> None:
    await _shop(admin.db)
    owner = await admin.browser("owner")
    page = await owner.get("/admin/payments?currency=RUB&status=refunded", headers=EN)
    assert '<input type="hidden" name="currency" value="RUB">' in page.text
    asked = await owner.post(
        "/admin/payments/export.xlsx",
        data={"currency": "RUB", "status": "refunded"},
        headers={"hx-request": "true", "hx-target": "export-status"},
    )
    assert asked.status_code == 202, asked.text
    export = await admin.db.scalar(select(ExportFile).where(ExportFile.kind == "payments"))
    assert export is not None and export.row_count == 1
    deadline = asyncio.get_running_loop().time() + 30
    while (await admin.db.get_one(ExportFile, export.id, populate_existing=True)).state != JobState.DONE:
        assert asyncio.get_running_loop().time() < deadline, "the Excel job did not finish"
        await asyncio.sleep(0.05)
    download = await owner.get(f"/admin/users/exports/{export.id}/download")
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as book:
        names = book.namelist()
        text = "".join(book.read(name).decode() for name in names if name.startswith("xl/") and name.endswith(".xml"))
    assert "ext-p5" in text and "ext-p1" not in text and "'=cmd" not in text
    # A contradictory filter is refused before anything is queued; support has no export permission.
    bad = await owner.post("/admin/payments/export.xlsx", data={"currency": "DOGE"})
    assert bad.status_code == 422
    assert await admin.db.scalar(select(func.count()).select_from(ExportFile)) == 1
    support = await admin.browser("support")
    assert (await support.post("/admin/payments/export.xlsx", data={})).status_code == 403
