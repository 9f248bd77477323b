"""/admin/faq and /api/admin/faq: bad input refused next to its field (nothing created or changed); an entry
added, edited or hidden in the admin is what the customers' help search finds at the next query."""

from __future__ import annotations

import html

from sqlalchemy import func, select

from app.models import AuditLog, FaqCategory, FaqItem
from tests.admin.conftest import AdminHarness
from tests.web import htmx, text_of, tma

CUSTOMER = tma(user_id=557001, language="en")


async def fresh(admin: AdminHarness) -> None:
    await admin.db.rollback()
    admin.db.expire_all()


async def counts(admin: AdminHarness) -> tuple[int, int]:
    await fresh(admin)
    categories = await admin.db.scalar(select(func.count()).select_from(FaqCategory)) or 0
    items = await admin.db.scalar(select(func.count()).select_from(FaqItem)) or 0
    return categories, items


async def search(admin: AdminHarness, query: str) -> str:
    response = await admin.client.get("/app/help/search", params={"q": query}, headers=CUSTOMER | htmx("faq_results"))
    assert response.status_code == 200
    return html.unescape(text_of(response.text))


async def category(admin: AdminHarness) -> int:
    admin.db.add(FaqCategory(slug="billing", titles={"en": "Billing", "ru": "Оплата"}, sort_order=1))
    await admin.db.commit()
    return await admin.db.scalar(select(FaqCategory.id).where(FaqCategory.slug == "billing"))  # type: ignore[return-value]


GOOD = {"slug": "refund-window", "language": "en", "question": "Can I get a refund?", "answer": "Within 14 days."}


async def test_bad_entries_and_categories_are_refused_inline_and_nothing_is_created(admin: AdminHarness) -> None:
    category_id = await category(admin)
    owner = await admin.browser("owner")
    good = GOOD | {"category_id": str(category_id), "sort_order": "1", "is_active": "1"}
    cases = [
        ({"slug": "Bad Slug"}, "slug", "String should match pattern"),
        ({"question": ""}, "question", "Field required"),
        ({"answer": "x" * 4001}, "answer", "at most 4000 characters"),
        ({"category_id": "999999"}, "category_id", "No such category"),
        ({"language": "de"}, "language", "Expected one of"),
        ({"sort_order": "-1"}, "sort_order", "greater than or equal to 0"),
    ]
    for change, field, message in cases:
        response = await owner.post("/admin/faq/items", data=good | change, headers=htmx())
        assert response.status_code == 422, change
        assert f'id="{field}-error"' in response.text, change
        assert message in html.unescape(text_of(response.text)), (change, message)
    bad_category = await owner.post(
        "/admin/faq/categories", data={"slug": "billing", "titles.en": "Again", "sort_order": "0"}, headers=htmx()
    )
    assert bad_category.status_code == 422 and "already called" in html.unescape(bad_category.text)
    untitled = await owner.post("/admin/faq/categories", data={"slug": "empty", "sort_order": "0"}, headers=htmx())
    assert untitled.status_code == 422 and 'id="titles-error"' in untitled.text
    assert await counts(admin) == (1, 0)
    assert not list(await admin.db.scalars(select(AuditLog).where(AuditLog.action.like("faq.%"))))


async def test_the_api_refuses_bad_input_naming_the_field(admin: AdminHarness) -> None:
    category_id = await category(admin)
    headers = await admin.bearer("marketing")
    good = GOOD | {"category_id": category_id}
    created = await admin.client.post("/api/admin/faq/items", json=good, headers=headers)
    assert created.status_code == 201, created.text
    for body, field in (
        (good, "invalid_slug"),  # the same slug and language again
        (good | {"slug": "x y"}, None),
        (good | {"slug": "other", "category_id": 999999}, "invalid_category_id"),
    ):
        response = await admin.client.post("/api/admin/faq/items", json=body, headers=headers)
        assert response.status_code == 422, body
        if field:
            assert response.json()["error"]["code"] == field
        else:
            assert response.json()["error"]["fields"][0]["field"] == "slug"
    not_empty = await admin.client.delete(f"/api/admin/faq/categories/{category_id}", headers=headers)
    assert not_empty.status_code == 422
    assert await counts(admin) == (1, 1)


async def test_search_sees_an_entry_as_soon_as_it_is_added_edited_or_hidden(admin: AdminHarness) -> None:
    category_id = await category(admin)
    owner = await admin.browser("owner")
    assert "Can I get a refund?" not in await search(admin, "refund")
    created = await owner.post(
        "/admin/faq/items", data=GOOD | {"category_id": str(category_id), "is_active": "1"}, headers=htmx()
    )
    assert created.status_code == 200
    assert "Can I get a refund?" in await search(admin, "refund")
    await fresh(admin)
    item_id = await admin.db.scalar(select(FaqItem.id).where(FaqItem.slug == "refund-window"))
    page = await owner.get(f"/admin/faq/items/{item_id}")
    assert page.status_code == 200 and 'id="preview"' in page.text
    edited = await owner.post(
        f"/admin/faq/items/{item_id}",
        data=GOOD | {"category_id": str(category_id), "question": "Money back?", "is_active": "1"},
        headers=htmx(),
    )
    assert edited.status_code == 200
    found = await search(admin, "money back")
    assert "Money back?" in found and "Can I get a refund?" not in found
    hidden = await owner.post(
        f"/admin/faq/items/{item_id}",
        data=GOOD | {"category_id": str(category_id), "question": "Money back?"},  # the checkbox unticked
        headers=htmx(),
    )
    assert hidden.status_code == 200
    assert "Money back?" not in await search(admin, "money back")
    await fresh(admin)
    actions = [row.action for row in await admin.db.scalars(select(AuditLog).where(AuditLog.action.like("faq.%")))]
    assert actions == ["faq.item_create", "faq.item_update", "faq.item_update"]
