"""The FAQ as the editor lists it: every category, and every entry of one language (active or not), in the
customers' order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import FaqCategory, FaqItem


@dataclass(frozen=True, slots=True)
class Group:
    category: FaqCategory
    items: list[FaqItem]


async def categories(session: AsyncSession) -> list[FaqCategory]:
    return list((await session.scalars(select(FaqCategory).order_by(FaqCategory.sort_order, FaqCategory.id))).all())


async def groups(session: AsyncSession, language: str) -> list[Group]:
    items = (
        await session.scalars(
            select(FaqItem).where(FaqItem.language == language).order_by(FaqItem.sort_order, FaqItem.id)
        )
    ).all()
    return [Group(c, [i for i in items if i.category_id == c.id]) for c in await categories(session)]


async def items(session: AsyncSession, language: str | None = None) -> list[FaqItem]:
    query = select(FaqItem).order_by(FaqItem.language, FaqItem.category_id, FaqItem.sort_order, FaqItem.id)
    if language:
        query = query.where(FaqItem.language == language)
    return list((await session.scalars(query)).all())
