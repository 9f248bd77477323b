"""Catalogs: language choice, CLDR plural rules in every language, fallbacks (tests/kit/test_catalogs.py checks
the catalogs themselves)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from app.kit.i18n import ADMIN_LANGUAGES, Translator, pick_language, plural_form, translate


def test_pick_language_from_telegram_codes() -> None:
    assert pick_language("en-US") == "en"
    assert pick_language("ru") == "ru"
    assert pick_language("de") == "ru"
    assert pick_language(None, default="en") == "en"
    assert pick_language("hi-IN") == "hi"
    assert pick_language("id-ID") == "id"
    assert pick_language("in") == "id"  # Indonesian's old ISO code, still sent by some clients


def test_staff_pages_pick_among_their_languages() -> None:
    assert pick_language("hi", "ru", among=ADMIN_LANGUAGES) == "en"
    assert pick_language("ru-RU", "en", among=ADMIN_LANGUAGES) == "ru"
    assert pick_language("de", "ru", among=ADMIN_LANGUAGES) == "ru"


COUNTS = (0, 1, 2, 5, 11, 21, 101)


def test_cldr_plural_categories_for_the_usual_counts() -> None:
    assert [plural_form("ru", n) for n in COUNTS] == ["many", "one", "few", "many", "many", "one", "one"]
    assert [plural_form("en", n) for n in COUNTS] == ["other", "one", "other", "other", "other", "other", "other"]
    assert [plural_form("hi", n) for n in COUNTS] == ["one", "one", "other", "other", "other", "other", "other"]
    assert [plural_form("id", n) for n in COUNTS] == ["other"] * len(COUNTS)


def test_plural_texts_in_every_language() -> None:
    assert [translate("ru", "days", count=n) for n in COUNTS] == [
        "0 дней",
        "1 день",
        "2 дня",
        "5 дней",
        "11 дней",
        "21 день",
        "101 день",
    ]
    assert [translate("en", "days", count=n) for n in (0, 1, 2, 21)] == ["0 days", "1 day", "2 days", "21 days"]
    assert [translate("hi", "help.search.found", count=n) for n in (0, 1, 2, 101)] == [
        "0 जवाब मिला",
        "1 जवाब मिला",
        "2 जवाब मिले",
        "101 जवाब मिले",
    ]
    assert [translate("id", "days", count=n) for n in (1, 2, 101)] == ["1 hari", "2 hari", "101 hari"]


def test_missing_keys_fall_back_to_english_then_default_language_then_key() -> None:
    assert translate("en", "no.such.key") == "no.such.key"
    assert translate("hi", "admin_users.title") == translate("en", "admin_users.title")  # staff texts: ru/en only
    assert translate("id", "admin_users.title") == "Customers"


def test_dates_in_texts_follow_the_reader() -> None:
    moment = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
    moscow = ZoneInfo("Europe/Moscow")
    assert (
        Translator("en", moscow)("diag.subscription.expired", until=moment) == "Your subscription ended on Dec 2, 2026."
    )
    assert Translator("id")("diag.subscription.expired", until=moment) == "Langganan Anda berakhir pada 1 Des 2026."
    # An explicit format in the text (the support report) keeps its own layout.
    assert Translator("hi")("diag.summary.title", at=moment) == "ऑटो-जाँच 2026-12-01 21:30 UTC"
