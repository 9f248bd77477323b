"""Catalogs: language choice, plural rules, fallbacks, and ru/en having the same keys."""

from __future__ import annotations

from app.kit.i18n import available_languages, catalog, pick_language, translate


def test_pick_language_from_telegram_codes() -> None:
    assert pick_language("en-US") == "en"
    assert pick_language("ru") == "ru"
    assert pick_language("de") == "ru"
    assert pick_language(None, default="en") == "en"


def test_russian_and_english_plurals() -> None:
    assert [translate("ru", "days", count=n) for n in (1, 2, 5, 11, 21, 22, 112)] == [
        "1 день",
        "2 дня",
        "5 дней",
        "11 дней",
        "21 день",
        "22 дня",
        "112 дней",
    ]
    assert [translate("en", "days", count=n) for n in (1, 2)] == ["1 day", "2 days"]


def test_missing_keys_fall_back_to_default_language_then_key() -> None:
    assert translate("en", "no.such.key") == "no.such.key"


def test_catalogs_have_the_same_keys() -> None:
    languages = available_languages()
    assert {"ru", "en"} <= set(languages)
    keys = {lang: set(catalog(lang)) for lang in languages}
    assert keys["ru"] == keys["en"]
