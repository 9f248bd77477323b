"""What staff change in the FAQ (/admin/faq): categories (slug, title per language, order) and entries (one
per slug and language: question, answer, order, on/off). Values arrive already shaped (the admin's schemas
check lengths and patterns); the rules that need the database are here — a slug used once per language, a
category that exists, a category emptied before it is removed — each refused with FieldInvalid naming the
field. Every change writes its audit row (before and after) in the caller's transaction. Search reads the
table at each query (app/help/service.py), so an edit is found at once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.kit.errors import NotFound
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import available_languages
from app.models import FaqCategory, FaqItem

ITEM_FIELDS = ("category_id", "slug", "language", "question", "answer", "sort_order", "is_active")


def category_state(category: FaqCategory) -> dict[str, Any]:
    return {"slug": category.slug, "titles": dict(category.titles or {}), "sort_order": category.sort_order}


def item_state(item: FaqItem) -> dict[str, Any]:
    return {name: getattr(item, name) for name in ITEM_FIELDS}


async def get_category(session: AsyncSession, category_id: int) -> FaqCategory:
    category = await session.get(FaqCategory, category_id)
    if category is None:
        raise NotFound("No such FAQ category.")
    return category


async def get_item(session: AsyncSession, item_id: int) -> FaqItem:
    item = await session.get(FaqItem, item_id)
    if item is None:
        raise NotFound("No such FAQ entry.")
    return item


def _titles(titles: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(titles) - set(available_languages()))
    if unknown:
        raise FieldInvalid(f"titles.{unknown[0]}", f"No language {unknown[0]!r}.")
    kept = {language: text.strip() for language, text in titles.items() if text and text.strip()}
    if not kept:
        raise FieldInvalid("titles", "Give the category a title in at least one language.")
    return kept


async def _check_category_slug(session: AsyncSession, slug: str, own_id: int | None = None) -> None:
    clash = await session.scalar(select(FaqCategory.id).where(FaqCategory.slug == slug))
    if clash is not None and clash != own_id:
        raise FieldInvalid("slug", f"A category is already called {slug!r}.")


async def create_category(
    session: AsyncSession, actor: Actor, *, slug: str, titles: dict[str, str], sort_order: int
) -> FaqCategory:
    await _check_category_slug(session, slug)
    category = FaqCategory(slug=slug, titles=_titles(titles), sort_order=sort_order)
    session.add(category)
    await session.flush()
    record_by(
        session,
        actor,
        action="faq.category_create",
        entity_type="faq_category",
        entity_id=category.id,
        after=category_state(category),
    )
    return category


async def update_category(
    session: AsyncSession, actor: Actor, category: FaqCategory, *, slug: str, titles: dict[str, str], sort_order: int
) -> FaqCategory:
    await _check_category_slug(session, slug, category.id)
    before = category_state(category)
    category.slug, category.titles, category.sort_order = slug, _titles(titles), sort_order
    record_by(
        session,
        actor,
        action="faq.category_update",
        entity_type="faq_category",
        entity_id=category.id,
        before=before,
        after=category_state(category),
    )
    await session.flush()
    return category


async def delete_category(session: AsyncSession, actor: Actor, category: FaqCategory) -> None:
    """Only an empty category: removing one would silently delete every answer in it."""
    count = await session.scalar(select(func.count()).select_from(FaqItem).where(FaqItem.category_id == category.id))
    if count:
        raise FieldInvalid("category", f"The category still holds {count} entries; move or delete them first.")
    record_by(
        session,
        actor,
        action="faq.category_delete",
        entity_type="faq_category",
        entity_id=category.id,
        before=category_state(category),
    )
    await session.delete(category)
    await session.flush()


async def _check_item(session: AsyncSession, values: dict[str, Any], own_id: int | None = None) -> None:
    if values["language"] not in available_languages():
        raise FieldInvalid("language", f"Expected one of {', '.join(available_languages())}.")
    if await session.get(FaqCategory, values["category_id"]) is None:
        raise FieldInvalid("category_id", "No such category.")
    clash = await session.scalar(
        select(FaqItem.id).where(FaqItem.slug == values["slug"], FaqItem.language == values["language"])
    )
    if clash is not None and clash != own_id:
        raise FieldInvalid("slug", f"An entry {values['slug']!r} in {values['language']} exists already.")


async def create_item(session: AsyncSession, actor: Actor, values: dict[str, Any]) -> FaqItem:
    await _check_item(session, values)
    item = FaqItem(**{name: values[name] for name in ITEM_FIELDS})
    session.add(item)
    await session.flush()
    record_by(
        session, actor, action="faq.item_create", entity_type="faq_item", entity_id=item.id, after=item_state(item)
    )
    return item


async def update_item(session: AsyncSession, actor: Actor, item: FaqItem, values: dict[str, Any]) -> FaqItem:
    await _check_item(session, values, item.id)
    before = item_state(item)
    for name in ITEM_FIELDS:
        setattr(item, name, values[name])
    record_by(
        session,
        actor,
        action="faq.item_update",
        entity_type="faq_item",
        entity_id=item.id,
        before=before,
        after=item_state(item),
    )
    await session.flush()
    return item


async def delete_item(session: AsyncSession, actor: Actor, item: FaqItem) -> None:
    record_by(
        session, actor, action="faq.item_delete", entity_type="faq_item", entity_id=item.id, before=item_state(item)
    )
    await session.delete(item)
    await session.flush()
