"""Message catalogs (app/locales/<lang>/<area>.json, merged per language), ru by default; plural rules from CLDR
through Babel. One file per area keeps catalogs small and lets areas be translated independently.

A catalog entry is a string with {placeholders}, or a dict of plural forms named by CLDR's categories ("zero",
"one", "two", "few", "many", "other") chosen by the `count` parameter. A missing key falls back along
FALLBACKS (Hindi and Indonesian to English: the admin is only written in ru and en), then to the default
language, then to the key itself, so a half-translated catalog never breaks a page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale

from app.kit.formatting import format_date

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DEFAULT_LANGUAGE = "ru"
# Where a language looks for a key it lacks before the default language: readers of Hindi and Indonesian are
# likelier to read English than Russian (the staff pages are only in ru and en).
FALLBACKS = {"hi": "en", "id": "en"}
# Languages the staff pages are written in (app/locales/*/admin*.json); a staff member's other language gets en.
ADMIN_LANGUAGES = ("en", "ru")

# Staff-edited texts ((language, key) -> entry) in force for the current request, bot update or job; set by
# app/texts/overrides.py (the foundation cannot read the database). A context variable, so two app instances in
# one process, and each request, see their own database's texts.
OVERRIDES: ContextVar[Mapping[tuple[str, str], Any] | None] = ContextVar("i18n_overrides", default=None)


@lru_cache(maxsize=1)
def available_languages() -> tuple[str, ...]:
    return tuple(sorted(path.name for path in LOCALES_DIR.iterdir() if path.is_dir()))


@lru_cache(maxsize=16)
def catalog(language: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted((LOCALES_DIR / language).glob("*.json")):
        entries = json.loads(path.read_text(encoding="utf-8"))
        if clash := merged.keys() & entries.keys():
            raise ValueError(f"{path}: keys already defined in another file: {sorted(clash)}")
        merged |= entries
    return merged


def pick_language(code: str | None, default: str = DEFAULT_LANGUAGE, *, among: tuple[str, ...] | None = None) -> str:
    """Map a Telegram/browser language code ("en-US", "hi", "id") to a language we have (or one of `among`)."""
    choices = among if among is not None else available_languages()
    if code:
        base = code.replace("_", "-").split("-")[0].lower()
        # Telegram and old browsers still send Indonesian as "in", its pre-1989 ISO code.
        base = "id" if base == "in" else base
        if base in choices:
            return base
        if among is not None and FALLBACKS.get(base) in choices:
            return FALLBACKS[base]
    return default


@lru_cache(maxsize=32)
def _plural_rule(language: str) -> Any:
    try:
        return Locale.parse(language).plural_form
    except (ValueError, LookupError):
        return Locale.parse("en").plural_form


def plural_form(language: str, count: int) -> str:
    """CLDR's plural category of a whole count in a language: "one", "few", "many", "other"…"""
    return str(_plural_rule(language)(abs(count)))


@lru_cache(maxsize=16)
def integer_plural_forms(language: str) -> frozenset[str]:
    """The categories whole counts can reach in a language (Russian: one, few, many; Indonesian: other) — what
    every plural catalog entry must hold. CLDR's rules repeat within every hundred past the first thousand."""
    return frozenset(plural_form(language, n) for n in range(0, 2000))


@lru_cache(maxsize=32)
def _reading_chain(language: str) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """The languages a reader of `language` is shown, in order (FALLBACKS, then the default), each with its
    catalog (empty for a language we have none of). Found once per language: a page asks for a hundred texts."""
    chain = [language]
    while (nxt := FALLBACKS.get(chain[-1])) and nxt not in chain:
        chain.append(nxt)
    if DEFAULT_LANGUAGE not in chain:
        chain.append(DEFAULT_LANGUAGE)
    return tuple((candidate, catalog(candidate) if candidate in available_languages() else {}) for candidate in chain)


def _entry(language: str, key: str) -> tuple[str, Any]:
    """The text of `key` in the first language of the reader's chain that has it, staff overrides first."""
    overrides = OVERRIDES.get()
    if overrides is None:  # not `or {}`: an empty mapping may still be watching what is read (experiments/texts.py)
        overrides = {}
    for candidate, texts in _reading_chain(language):
        entry = overrides.get((candidate, key))
        if entry is None:
            entry = texts.get(key)
        if entry is not None:
            return candidate, entry
    return language, None


def fill(template: str, params: dict[str, Any]) -> str:
    """str.format, plus one rule of typography: a value ending in an abbreviation's dot ("7 дек. 2026 г.")
    absorbs the sentence's full stop right after it (also across a closing tag), instead of doubling it."""
    text = template.format(**params)
    for value in params.values():
        shown = format(value, "")
        if shown.endswith("."):
            text = text.replace(f"{shown}.", shown).replace(f"{shown}</b>.", f"{shown}</b>")
    return text


def translate(language: str, key: str, **params: Any) -> str:
    language, entry = _entry(language, key)
    if entry is None:
        return key
    if isinstance(entry, dict):
        count = int(params.get("count", 0))
        entry = entry.get(plural_form(language, count)) or entry.get("other") or entry.get("many") or key
    try:
        return fill(str(entry), params)
    except (KeyError, IndexError, ValueError):
        return str(entry)


class _Moment:
    """A datetime parameter as a text shows it: CLDR's date in the reader's language and zone for a plain
    "{until}", the datetime's own strftime for an explicit "{at:%Y-%m-%d %H:%M}" (reports read by support)."""

    def __init__(self, value: datetime, zone: tzinfo, language: str) -> None:
        self.value, self.zone, self.language = value, zone, language

    def __format__(self, spec: str) -> str:
        if spec:
            return format(self.value, spec)
        return format_date(self.value, self.zone, self.language)

    def __str__(self) -> str:
        return self.__format__("")


class Translator:
    """Bound to one language (and the reader's time zone, for dates); templates call it as `_("key", name=value)`."""

    def __init__(self, language: str, zone: tzinfo = UTC) -> None:
        self.language = language
        self.zone = zone

    def __call__(self, key: str, **params: Any) -> str:
        for name, value in params.items():
            if isinstance(value, datetime):
                params[name] = _Moment(value, self.zone, self.language)
        return translate(self.language, key, **params)
