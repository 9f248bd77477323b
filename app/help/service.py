"""The FAQ as customers read it (SPEC §3.6): entries by category in their language, and search.

Search runs in Python over one language's entries rather than in SQL: SQLite's lower() folds ASCII only, so
"ССЫЛКУ" would not find "ссылку" there, and the FAQ is a few dozen rows, read in one query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.errors import ValidationFailed
from app.kit.i18n import DEFAULT_LANGUAGE, translate
from app.models import FaqCategory, FaqItem

MAX_QUERY_LENGTH = 100


class QueryTooLong(ValidationFailed):
    code = "query_too_long"


@dataclass(frozen=True, slots=True)
class Entry:
    slug: str
    question: str
    answer: str
    language: str
    category_slug: str


@dataclass(frozen=True, slots=True)
class Category:
    slug: str
    title: str
    entries: tuple[Entry, ...]


async def categories(
    session: AsyncSession, language: str, *, default_language: str = DEFAULT_LANGUAGE
) -> list[Category]:
    """Categories in order, each with its visible entries; categories left empty are omitted."""
    rows = await _load(session, language, default_language)
    grouped: dict[int, tuple[FaqCategory, list[Entry]]] = {}
    for category, entry in rows:
        grouped.setdefault(category.id, (category, []))[1].append(entry)
    return [
        Category(category.slug, _title(category, language, default_language), tuple(entries))
        for category, entries in grouped.values()
    ]


async def entries(session: AsyncSession, language: str, *, default_language: str = DEFAULT_LANGUAGE) -> list[Entry]:
    """Every visible entry, in category then entry order."""
    return [entry for _, entry in await _load(session, language, default_language)]


async def search(
    session: AsyncSession,
    language: str,
    query: str,
    limit: int = 20,
    *,
    default_language: str = DEFAULT_LANGUAGE,
) -> list[Entry]:
    """Entries containing every word of `query` (in the question or the answer, any case), those matching in
    the question first. A blank query finds nothing; one over MAX_QUERY_LENGTH characters is refused."""
    if len(query) > MAX_QUERY_LENGTH:
        raise QueryTooLong(translate(language, "help.search.too_long", limit=MAX_QUERY_LENGTH))
    words = normalize(query).split()
    if not words:
        return []
    ranked: list[tuple[int, int, Entry]] = []
    for position, entry in enumerate(await entries(session, language, default_language=default_language)):
        question, answer = normalize(entry.question), normalize(entry.answer)
        if all(word in question or word in answer for word in words):
            in_question = sum(word in question for word in words)
            ranked.append((-in_question, position, entry))
    ranked.sort(key=lambda found: found[:2])
    return [entry for *_, entry in ranked[:limit]]


def normalize(text: str) -> str:
    """Case-folded, "ё" read as "е" (Russian readers type either), whitespace collapsed."""
    return re.sub(r"\s+", " ", text.casefold().replace("ё", "е")).strip()


async def _load(session: AsyncSession, language: str, default_language: str) -> list[tuple[FaqCategory, Entry]]:
    """Each slug once: in `language` where it has a translation, else in the default language. An entry
    switched off in the reader's language stays hidden rather than showing its translation."""
    languages = sorted({language, default_language})
    query = (
        select(FaqCategory, FaqItem)
        .join(FaqItem, FaqItem.category_id == FaqCategory.id)
        .where(FaqItem.language.in_(languages))
        .order_by(FaqCategory.sort_order, FaqCategory.id, FaqItem.sort_order, FaqItem.id)
    )
    rows = (await session.execute(query)).all()
    chosen: dict[str, tuple[int, FaqCategory, FaqItem]] = {}
    for index, (category, item) in enumerate(rows):
        if item.slug not in chosen or item.language == language:
            chosen[item.slug] = (index, category, item)
    picked = sorted(chosen.values(), key=lambda found: found[0])  # the chosen row's own place in the order
    return [
        (category, Entry(item.slug, item.question, item.answer, item.language, category.slug))
        for _, category, item in picked
        if item.is_active
    ]


def _title(category: FaqCategory, language: str, default_language: str) -> str:
    titles = category.titles or {}
    return titles.get(language) or titles.get(default_language) or next(iter(titles.values()), "") or category.slug
