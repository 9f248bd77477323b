"""Message catalogs (app/locales/<lang>/<area>.json, merged per language), ru by default; Russian and English
plural rules. One file per area keeps catalogs small and lets areas be translated independently.

A catalog entry is a string with {placeholders}, or a dict of plural forms ("one", "few", "many", "other")
chosen by the `count` parameter. A missing key falls back to the default language, then to the key itself,
so a half-translated catalog never breaks a page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DEFAULT_LANGUAGE = "ru"

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


def pick_language(code: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Map a Telegram/browser language code ("en-US", "ru") to a language we have."""
    if code:
        base = code.replace("_", "-").split("-")[0].lower()
        if base in available_languages():
            return base
    return default


def plural_form(language: str, count: int) -> str:
    n = abs(count)
    if language == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return "one"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "few"
        return "many"
    return "one" if n == 1 else "other"


def translate(language: str, key: str, **params: Any) -> str:
    overrides = OVERRIDES.get() or {}
    entry = overrides.get((language, key)) or catalog(language).get(key)
    if entry is None and language != DEFAULT_LANGUAGE:
        entry = overrides.get((DEFAULT_LANGUAGE, key)) or catalog(DEFAULT_LANGUAGE).get(key)
        language = DEFAULT_LANGUAGE
    if entry is None:
        return key
    if isinstance(entry, dict):
        count = int(params.get("count", 0))
        entry = entry.get(plural_form(language, count)) or entry.get("other") or entry.get("many") or key
    try:
        return str(entry).format(**params)
    except (KeyError, IndexError, ValueError):
        return str(entry)


class Translator:
    """Bound to one language; templates call it as `_("key", name=value)`."""

    def __init__(self, language: str) -> None:
        self.language = language

    def __call__(self, key: str, **params: Any) -> str:
        return translate(self.language, key, **params)
