"""The Help page over HTTP, on SQLite and PostgreSQL: the seeded FAQ by category in each language, search that
folds Cyrillic case in Python (SQLite's lower() does not), the support contact, and autodiagnostics with its
escalation link, for a customer without a subscription and for a healthy trial on the demo panel."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.demo.seed import FAQ, seed_demo
from app.help import service as faq
from app.help.pages import support_link
from app.kit.i18n import Translator, catalog
from app.models import FaqCategory, FaqItem, Node, User, VpnAccount
from app.panels.sync import check_server_health
from tests.conftest import make_settings
from tests.factories import add_server
from tests.web import BOT_TOKEN, browser_session, drain_outbox, htmx, serve, text_of, tma

RU, EN = 501, 502  # Telegram ids of a Russian- and an English-speaking customer
DIAGNOSTICS_SOURCE = Path(__file__).resolve().parents[2] / "app" / "diagnostics" / "service.py"


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, support_username="@help_desk")


@pytest.fixture
async def web(web_settings: Settings, db: AsyncSession) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    await seed_demo(db)
    await db.commit()
    async with serve(web_settings) as pair:
        yield pair


def ru() -> dict[str, str]:
    return tma(user_id=RU, language="ru")


def en() -> dict[str, str]:
    return tma(user_id=EN, language="en")


async def find(client: httpx.AsyncClient, query: str, headers: dict[str, str]) -> httpx.Response:
    return await client.get("/app/help/search", params={"q": query}, headers=headers | htmx("faq_results"))


def shown_slugs(page: str) -> list[str]:
    return re.findall(r'<details class="faq-item" id="([a-z-]+)"(?: open)?>', page)


def escalate_text(page: str) -> str:
    match = re.search(r'<a class="button" href="([^"]+)" data-open-link[^>]*data-testid="escalate"', page)
    assert match, "no escalate link"
    url = urlparse(html.unescape(match[1]))
    assert (url.scheme, url.netloc, url.path) == ("https", "t.me", "/help_desk")
    return parse_qs(url.query)["text"][0]


def summary_of(page: str) -> str:
    match = re.search(r'<pre data-testid="diag-summary">(.*?)</pre>', page, re.S)
    assert match, "no summary"
    return html.unescape(match[1])


# --- FAQ ------------------------------------------------------------------------------------------------------------


async def test_categories_render_in_russian_and_in_english(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    page = await client.get("/app/help", headers=ru())
    assert page.status_code == 200 and page.text.startswith("<!doctype html>") and '<html lang="ru">' in page.text
    text = text_of(page.text)
    for title in ("Помощь", "Начало работы", "Оплата", "Не работает", "Как добавить ссылку в приложение?"):
        assert title in text
    seeded = [slug for _, items in FAQ.values() for slug, _texts in items]
    assert shown_slugs(page.text) == seeded  # category order, then entry order, each once
    assert '<details class="faq-item" id="import-link">' in page.text  # closed until searched for
    assert 'hx-get="/app/help/search"' in page.text and 'hx-target="#faq_results"' in page.text
    assert 'href="https://t.me/help_desk" data-open-link' in page.text and "Написать @help_desk" in text
    assert 'hx-post="/app/help/diagnostics"' in page.text and '<div id="diagnostics"' in page.text
    assert re.search(r'aria-current="page">(?:(?!</a>).)*<span>Помощь</span></a>', page.text)  # the tab is marked

    english = await client.get("/app/help", headers=en() | htmx())
    assert english.status_code == 200 and "<html" not in english.text  # the content block only
    text = text_of(english.text)
    for title in ("Getting started", "Payment", "Troubleshooting", "How do I add the link to my app?"):
        assert title in text
    assert "Начало работы" not in text and shown_slugs(english.text) == seeded


async def test_hindi_and_indonesian_readers_get_the_faq_in_their_language(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession
) -> None:
    _, client = web
    hindi = await client.get("/app/help", headers=tma(user_id=503, language="hi"))
    assert hindi.status_code == 200 and '<html lang="hi">' in hindi.text
    text = text_of(hindi.text)
    for title in ("मदद", "शुरुआत", "भुगतान", "समस्या का हल", "ऐप में लिंक कैसे जोड़ें?", "सपोर्ट से संपर्क करें"):
        assert title in text
    found = await find(client, "भुगतान", tma(user_id=503, language="hi"))
    assert {"how-pay", "after-payment"} <= set(shown_slugs(found.text)) and "जवाब मिले" in text_of(found.text)

    indonesian = await client.get("/app/help", headers=tma(user_id=504, language="id") | htmx())
    text = text_of(indonesian.text)
    for title in ("Bantuan", "Memulai", "Pembayaran", "Bagaimana cara menambahkan tautan ke aplikasi?"):
        assert title in text
    # An entry with no Indonesian text reads in English (the fallback), not in the shop's default Russian.
    await db.execute(delete(FaqItem).where(FaqItem.slug == "auto-renew", FaqItem.language == "id"))
    await db.commit()
    indonesian = await client.get("/app/help", headers=tma(user_id=504, language="id") | htmx())
    assert "How do I turn off auto-renewal?" in text_of(indonesian.text)


async def test_an_entry_missing_in_a_language_falls_back_to_the_default_language(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession
) -> None:
    _, client = web
    category = FaqCategory(slug="extra", titles={"ru": "Разное"}, sort_order=99)
    db.add(category)
    await db.flush()
    db.add(FaqItem(category_id=category.id, slug="ru-only", language="ru", question="Только по-русски?", answer="Да."))
    hidden = FaqItem(category_id=category.id, slug="hidden", language="ru", question="Скрыт", answer="Нет.")
    hidden.is_active = False
    db.add(hidden)
    await db.commit()
    page = await client.get("/app/help", headers=en() | htmx())
    text = text_of(page.text)
    assert "Разное Только по-русски?" in text and "Скрыт" not in text
    assert shown_slugs(page.text)[-1] == "ru-only" and "How do I pay?" in text  # translations still preferred
    found = await find(client, "ПО-РУССКИ", en())
    assert shown_slugs(found.text) == ["ru-only"]


async def test_search_folds_cyrillic_case(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    found = await find(client, "ССЫЛКУ", ru())
    assert found.status_code == 200 and "<html" not in found.text and "<h1" not in found.text
    # The question match first, then the answers that mention the word, in FAQ order.
    assert shown_slugs(found.text) == ["import-link", "how-connect", "devices", "refresh-subscription"]
    assert "Нашлось 4 ответа" in text_of(found.text)
    traffic = await find(client, "ЗАКОНЧИЛСЯ ТРАФИК", ru())
    assert shown_slugs(traffic.text) == ["traffic-limit"] and 'id="traffic-limit" open>' in traffic.text
    assert shown_slugs((await find(client, "перестает", ru())).text) == ["traffic-limit"]  # ё typed as е
    assert shown_slugs((await find(client, "  LiNk  ", en())).text)[0] == "import-link"


async def test_the_search_boxs_own_examples_find_other_word_forms(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """«оплата», «ссылка», «айфон» are what the placeholder suggests; the FAQ says «оплатить», «ссылку», iPhone."""
    _, client = web
    assert shown_slugs((await find(client, "оплата", ru())).text) == ["how-pay", "after-payment"]
    assert shown_slugs((await find(client, "ссылка", ru())).text)[0] == "import-link"
    assert shown_slugs((await find(client, "айфон", ru())).text) == ["devices"]
    assert shown_slugs((await find(client, "андроид", ru())).text) == ["devices"]
    assert shown_slugs((await find(client, "ios", en())).text) == ["devices"]
    assert shown_slugs((await find(client, "paying", en())).text) == ["how-pay"]
    assert shown_slugs((await find(client, "ссыл", ru())).text)[0] == "import-link"  # still being typed
    assert shown_slugs((await find(client, "оплата телепорт", ru())).text) == []  # every word still counts


async def test_every_word_of_a_query_must_match(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    assert shown_slugs((await find(client, "обновить подписку", ru())).text) == ["refresh-subscription"]
    assert shown_slugs((await find(client, "подписку обновить", ru())).text) == ["refresh-subscription"]
    assert shown_slugs((await find(client, "server wait", en())).text) == ["server-unavailable"]
    assert shown_slugs((await find(client, "ссылку трафик", ru())).text) == []


async def test_nothing_found_says_so_and_offers_support(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    found = await find(client, "<kvantovyi> teleport", en())
    assert found.status_code == 200 and shown_slugs(found.text) == []
    assert "Nothing found for “&lt;kvantovyi&gt; teleport”" in found.text  # escaped, not markup
    assert 'href="https://t.me/help_desk" data-open-link' in found.text
    nichego = await find(client, "телепорт", ru())
    assert "По запросу «телепорт» ничего не нашлось" in text_of(nichego.text)


async def test_a_blank_query_shows_every_category_again(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    found = await find(client, "   ", en())
    assert found.status_code == 200 and "Getting started" in found.text and len(shown_slugs(found.text)) == 12


async def test_a_query_over_100_characters_is_refused(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    _, client = web
    before = await db.scalar(select(func.count()).select_from(FaqItem))
    assert (await find(client, "x" * faq.MAX_QUERY_LENGTH, en())).status_code == 200
    refused = await find(client, "x" * (faq.MAX_QUERY_LENGTH + 1), en())
    assert refused.status_code == 422 and "at most 100 characters" in text_of(refused.text)
    page = await client.get("/app/help", params={"q": "я" * 101}, headers=ru())
    assert page.status_code == 422 and "не больше 100 символов" in text_of(page.text)
    assert await db.scalar(select(func.count()).select_from(FaqItem)) == before
    assert shown_slugs((await find(client, "link", en())).text)[0] == "import-link"  # still searching


async def test_a_javascript_free_search_gets_the_whole_page(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    for path in ("/app/help", "/app/help/search"):
        page = await client.get(path, params={"q": "трафик"}, headers=ru())
        assert page.status_code == 200 and "<!doctype html>" in page.text and 'value="трафик"' in page.text
        assert shown_slugs(page.text) == ["traffic-limit"]


def test_the_seed_answers_every_question_the_diagnostics_link_to() -> None:
    referenced = set(re.findall(r'"([a-z]+(?:-[a-z]+)+)"', DIAGNOSTICS_SOURCE.read_text()))
    assert {"after-payment", "import-link", "traffic-limit", "switch-location"} <= referenced
    seeded = dict(item for _, items in FAQ.values() for item in items)
    assert referenced <= seeded.keys()
    # every customer language answers them
    assert all(set(seeded[slug]) == {"ru", "en", "hi", "id"} for slug in referenced)
    assert all(q.strip() and a.strip() for slug in referenced for q, a in seeded[slug].values())


def test_support_link_accepts_the_usual_spellings() -> None:
    for configured in ("@help_desk", "help_desk", "https://t.me/help_desk", " t.me/help_desk/ "):
        assert support_link(configured) == "https://t.me/help_desk"
    assert support_link("@help_desk", "a b&c\nд") == "https://t.me/help_desk?text=a%20b%26c%0A%D0%B4"
    assert support_link("") is None and support_link("@no spaces") is None


# --- autodiagnostics --------------------------------------------------------------------------------------------------


async def test_diagnostics_without_a_subscription(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    _, client = web
    response = await client.post("/app/help/diagnostics", headers=en() | htmx("diagnostics"))
    assert response.status_code == 200 and "<h1" not in response.text  # the report region only
    page = response.text
    text = text_of(page)
    assert 'data-testid="diag-report" data-outcome="fail"' in page
    assert "We found why the VPN may not work." in text and "You do not have a subscription yet." in text
    assert "Get a subscription" in text
    assert '<a href="/app/help#how-pay">How do I pay?</a>' in page
    assert re.findall(r'data-check="(\w+)" data-outcome="(\w+)"', page) == [
        ("subscription", "fail"),
        ("account", "skipped"),
        ("link", "skipped"),
        ("server", "skipped"),
        ("client", "skipped"),
    ]
    user = await db.scalar(select(User).where(User.telegram_id == EN))
    assert user is not None
    summary = summary_of(page)
    assert summary.splitlines()[1:3] == [f"User {user.id}, Telegram {EN}", "Result: problem found"]
    assert escalate_text(page) == summary
    copied = re.search(r'<button type="button" class="secondary" data-copy="([^"]*)"', page)
    assert copied and html.unescape(copied[1]) == summary


async def test_diagnostics_of_a_healthy_demo_trial(web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession) -> None:
    app, client = web
    server = await add_server(db)
    await db.commit()
    await db.refresh(server)
    # The node health job records the demo panel's nodes, whose host names are made up: a TCP probe would find
    # them all down, so the Help page leaves them to the panel's own flags.
    resources = app.state.resources
    panel = resources.panels.for_server(server)
    assert await check_server_health(resources.sessionmaker, server, panel)
    assert set(await db.scalars(select(Node.address))) == {
        "nl-1.demo.vpnshop.local",
        "de-1.demo.vpnshop.local",
        "fi-1.demo.vpnshop.local",
    }
    assert (await client.post("/api/trial", headers=ru())).status_code == 201
    await drain_outbox(app)
    await db.rollback()
    account = await db.scalar(select(VpnAccount))
    assert account is not None and account.provisioned_at is not None
    # The customer's app connects: the node reports traffic to the panel.
    await panel.simulate_usage(account.panel_username, 1000, 5000)

    response = await client.post("/app/help/diagnostics", headers=ru() | htmx("diagnostics"))
    assert response.status_code == 200
    page = response.text
    assert 'data-testid="diag-report" data-outcome="ok"' in page
    assert re.findall(r'data-check="(\w+)" data-outcome="(\w+)"', page) == [
        (code, "ok") for code in ("subscription", "account", "link", "server", "client")
    ]
    text = text_of(page)
    assert "С нашей стороны всё работает." in text and "Серверы на связи: 3 из 3." in text
    summary = summary_of(page)
    assert escalate_text(page) == summary and "Итог: всё в порядке" in summary
    assert account.sub_token not in page and account.sub_token not in summary  # the link is a bearer secret


async def test_diagnostics_are_rate_limited_per_customer(web: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = web
    for _ in range(10):
        assert (await client.post("/app/help/diagnostics", headers=en() | htmx("diagnostics"))).status_code == 200
    refused = await client.post("/app/help/diagnostics", headers=en() | htmx("diagnostics"))
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 600
    assert re.search(r"Try again in \d+ minutes?\.", text_of(refused.text))
    assert (await client.post("/app/help/diagnostics", headers=ru() | htmx("diagnostics"))).status_code == 200


async def test_diagnostics_from_a_browser_need_the_csrf_token_and_work_without_javascript(
    web: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, web_settings: Settings
) -> None:
    _, client = web
    user = User(telegram_id=503, referral_code="ref503", language="en")
    db.add(user)
    await db.flush()
    token = await browser_session(client, db, user, web_settings)
    page = await client.get("/app/help")
    assert page.status_code == 200 and f'name="csrf_token" value="{token}"' in page.text
    assert (await client.post("/app/help/diagnostics")).status_code == 403
    done = await client.post("/app/help/diagnostics", data={"csrf_token": token})
    assert done.status_code == 200 and "<!doctype html>" in done.text  # the whole page, report included
    assert 'data-outcome="fail"' in done.text and len(shown_slugs(done.text)) == 12


def test_diagnostics_say_dates_as_people_write_them() -> None:
    """Not ISO timestamps (issue 20), but CLDR's medium dates (issue 19): "Nov 3, 2026" in English, "3 нояб. 2026 г."
    in Russian (the sentence's full stop absorbed by the abbreviation's)."""
    until = datetime(2026, 11, 3, 12, tzinfo=UTC)
    assert Translator("en")("diag.subscription.expired", until=until) == "Your subscription ended on Nov 3, 2026."
    assert Translator("ru")("diag.subscription.expired", until=until) == "Подписка закончилась 3 нояб. 2026\u202fг."
    assert not [key for key, text in catalog("en").items() if key.startswith("diag.") and "%Y-%m-%d}" in str(text)]
