"""The FAQ as customers read it (SPEC §3.6): entries by category in their language, and search.

Search runs in Python over one language's entries rather than in SQL: SQLite's lower() folds ASCII only, so
"ССЫЛКУ" would not find "ссылку" there, and the FAQ is a few dozen rows, read in one query. Words are compared
by their Snowball stems (Russian for Cyrillic words, English for Latin ones), so «оплата» finds «оплатить»
and "paid" finds "pay"; platform names match their other spellings (айфон = iPhone = iOS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.errors import ValidationFailed
from app.kit.i18n import DEFAULT_LANGUAGE, FALLBACKS, translate
from app.models import FaqCategory, FaqItem

MAX_QUERY_LENGTH = 100

# What customers call their device, in either language: any one spelling finds an answer naming another.
PLATFORM_SYNONYMS = (
    ("iphone", "айфон", "ios", "ipad", "айпад", "apple", "эпл"),
    ("android", "андроид", "андроед", "samsung", "самсунг", "xiaomi", "сяоми"),
    ("windows", "виндовс", "винда", "пк", "компьютер", "computer", "pc"),
    ("macos", "mac", "мак", "макбук", "macbook"),
    ("linux", "линукс", "ubuntu", "убунту"),
)
_STEMMERS = {
    "ru": snowballstemmer.stemmer("russian"),
    "en": snowballstemmer.stemmer("english"),
    "hi": snowballstemmer.stemmer("hindi"),
}
_WORD = re.compile(r"\w+")


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
    """Entries matching every word of `query` (in the question or the answer, any case, any word form), those
    matching in the question first. A blank query finds nothing; one over MAX_QUERY_LENGTH characters is
    refused."""
    if len(query) > MAX_QUERY_LENGTH:
        raise QueryTooLong(translate(language, "help.search.too_long", limit=MAX_QUERY_LENGTH))
    words = _WORD.findall(normalize(query))
    if not words:
        return []
    ranked: list[tuple[int, int, Entry]] = []
    for position, entry in enumerate(await entries(session, language, default_language=default_language)):
        question, answer = _indexed(entry.question), _indexed(entry.answer)
        if all(_matches(word, question) or _matches(word, answer) for word in words):
            in_question = sum(_matches(word, question) for word in words)
            ranked.append((-in_question, position, entry))
    ranked.sort(key=lambda found: found[:2])
    return [entry for *_, entry in ranked[:limit]]


def normalize(text: str) -> str:
    """Case-folded, "ё" read as "е" (Russian readers type either), whitespace collapsed."""
    return re.sub(r"\s+", " ", text.casefold().replace("ё", "е")).strip()


@dataclass(frozen=True, slots=True)
class _Indexed:
    text: str  # normalized
    stems: frozenset[str]


@lru_cache(maxsize=1024)
def _indexed(text: str) -> _Indexed:
    normalized = normalize(text)
    return _Indexed(normalized, frozenset(stem(word) for word in _WORD.findall(normalized)))


def stem(word: str) -> str:
    """The Snowball stem of a normalized word, by the script it is written in."""
    # Indonesian shares the Latin script with English, so it is matched by whole words and prefixes only.
    language = "ru" if re.search("[а-я]", word) else "hi" if re.search("[\u0900-\u097f]", word) else "en"
    return _STEMMERS[language].stemWord(word)


@lru_cache(maxsize=256)
def _alternatives(word: str) -> tuple[str, ...]:
    """The stems a query word may match: its own, and every spelling of the platform it names."""
    own = stem(word)
    for group in PLATFORM_SYNONYMS:
        if word in group or own in {stem(name) for name in group}:
            return tuple({own, *(stem(name) for name in group)})
    return (own,)


def _matches(word: str, text: _Indexed) -> bool:
    """A word matches another form of itself (the same stem), or, while it is still being typed, the start of
    a word in the text ("ссыл" → «ссылку»)."""
    if word in text.text:
        return True
    return any(alternative in text.stems for alternative in _alternatives(word))


async def _load(session: AsyncSession, language: str, default_language: str) -> list[tuple[FaqCategory, Entry]]:
    """Each slug once: in `language` where it has a translation, else in its fallback (Hindi and Indonesian
    readers get English), else in the default language. An entry switched off in the reader's language stays
    hidden rather than showing its translation."""
    preference = _preference(language, default_language)
    languages = sorted(preference)
    query = (
        select(FaqCategory, FaqItem)
        .join(FaqItem, FaqItem.category_id == FaqCategory.id)
        .where(FaqItem.language.in_(languages))
        .order_by(FaqCategory.sort_order, FaqCategory.id, FaqItem.sort_order, FaqItem.id)
    )
    rows = (await session.execute(query)).all()
    chosen: dict[str, tuple[int, FaqCategory, FaqItem]] = {}
    for index, (category, item) in enumerate(rows):
        if item.slug not in chosen or preference.index(item.language) < preference.index(chosen[item.slug][2].language):
            chosen[item.slug] = (index, category, item)
    picked = sorted(chosen.values(), key=lambda found: found[0])  # the chosen row's own place in the order
    return [
        (category, Entry(item.slug, item.question, item.answer, item.language, category.slug))
        for _, category, item in picked
        if item.is_active
    ]


def _preference(language: str, default_language: str) -> list[str]:
    return list(dict.fromkeys(filter(None, (language, FALLBACKS.get(language), default_language))))


def _title(category: FaqCategory, language: str, default_language: str) -> str:
    titles = category.titles or {}
    found = next((titles[lang] for lang in _preference(language, default_language) if titles.get(lang)), None)
    return found or next(iter(titles.values()), "") or category.slug
