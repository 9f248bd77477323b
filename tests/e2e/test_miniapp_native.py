"""The Mini App feeling native in real Chromium with the simulated WebApp (issue 20): Telegram's BackButton goes
back on every tab and sub-page; pages render while telegram.org hangs (the browser cabinet never asks for it);
the Russian words the search box suggests find their answers."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Shop, browser_page, shot, telegram_page
from tests.e2e.test_customer_journeys import init_data, tab

pytestmark = pytest.mark.e2e

TIMEOUT = 15_000


def heading(page: Page) -> str:
    return page.locator("#content h1").first.inner_text()


def back(page: Page, path: str, title: str) -> None:
    """Press Telegram's BackButton and wait for the page before to be back, in full."""
    page.evaluate("() => Telegram.WebApp.BackButton.click()")
    expect(page).to_have_url(re.compile(re.escape(path) + "(#tgWebAppData=.*)?$"))  # the launch address keeps its hash
    expect(page.locator("#content h1").first).to_have_text(title)


def follow(page: Page, selector: str, path: str) -> str:
    """Open a link of the page (not the tab bar) and return the new page's title."""
    page.locator(selector).first.click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    expect(page.locator("#content h1").first).not_to_have_text(re.compile("^$"))
    return heading(page)


def test_the_back_button_goes_back_on_every_tab_and_sub_page(shop: Shop, browser: Browser) -> None:
    page, errors = telegram_page(browser, init_data(5550201))
    page.set_default_timeout(TIMEOUT)
    refused: list[str] = []
    page.on("response", lambda response: refused.append(response.url) if response.status == 401 else None)
    page.goto(f"{shop.base_url}/app")
    page.get_by_role("button", name="Start free trial").click()
    expect(page.get_by_test_id("days-left")).to_have_text("7 days")
    home = heading(page)
    page.wait_for_function("() => Telegram.WebApp.BackButton.isVisible === false")

    # Every tab, going back one at a time.
    tabs = [
        ("Connect", "/app/connect"),
        ("Friends", "/app/referrals"),
        ("Help", "/app/help"),
        ("Settings", "/app/settings"),
    ]
    visited = [("/app", home)]
    for name, path in tabs:
        tab(page, name)
        expect(page.locator("#content h1").first).not_to_have_text(visited[-1][1])
        assert page.evaluate("() => Telegram.WebApp.BackButton.isVisible") is True
        visited.append((path, heading(page)))
    for path, title in reversed(visited[:-1]):
        back(page, path, title)
        expect(page.get_by_text("Demo mode")).to_be_visible()  # the frame came back with the page
    page.wait_for_function("() => Telegram.WebApp.BackButton.isVisible === false")  # home: nothing to go back to

    # Sub-pages: usage, and the checkout two levels deep.
    usage = follow(page, '#content a[href="/app/usage"]', "/app/usage")
    assert usage == "Usage"
    back(page, "/app", home)
    plans = follow(page, '#content a[href="/app/checkout"]', "/app/checkout")
    follow(page, '[data-testid="plan-month"]', "/app/checkout/month")
    shot(page, "40-miniapp-back-from-plan")
    back(page, "/app/checkout", plans)
    back(page, "/app", home)
    expect(page.get_by_test_id("days-left")).to_have_text("7 days")  # the page itself, not an error in its place
    assert refused == [] and errors == []


def test_pages_render_while_telegram_org_hangs(shop: Shop, browser: Browser) -> None:
    # Inside Telegram: the page comes with the launch parameters and does not wait for Telegram's script.
    page, errors = telegram_page(browser, init_data(5550202), telegram_js="hang")
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app", wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="Hello, Mia!")).to_be_visible()
    tab(page, "Help")  # and keeps working: every request still carries the initData
    expect(page.get_by_role("heading", name="Help")).to_be_visible()
    shot(page, "41-miniapp-telegram-org-hangs")
    assert errors == []
    page.context.close()

    # The browser cabinet never loads Telegram's Mini App script, and nothing from telegram.org holds a page:
    # /login and the signed-in cabinet load completely (a script that hangs would hold the load event for as
    # long as the block lasts). Only the sign-in page's Telegram widget is asked for, after the page has loaded.
    browser_tab, browser_errors = browser_page(browser, telegram_org="hang")
    browser_tab.set_default_timeout(TIMEOUT)
    asked: list[str] = []
    browser_tab.on("request", lambda request: asked.append(request.url) if "telegram.org" in request.url else None)
    timings = {}
    started = time.monotonic()
    browser_tab.goto(f"{shop.base_url}/login", wait_until="load")
    timings["login"] = round(time.monotonic() - started, 3)
    expect(browser_tab.get_by_role("heading", name="Sign in")).to_be_visible()
    started = time.monotonic()
    browser_tab.get_by_role("button", name=re.compile("demo customer", re.I)).click()
    browser_tab.wait_for_url(re.compile(r"/app$"), wait_until="load")
    timings["cabinet"] = round(time.monotonic() - started, 3)
    expect(browser_tab.locator("#content h1")).to_contain_text(
        re.compile("Hello|Привет")
    )  # the demo customer speaks Russian
    shot(browser_tab, "42-browser-cabinet-telegram-org-hangs")
    print(f"loaded while telegram.org hangs, seconds: {timings}")
    assert [url.split("?")[0] for url in asked] == ["https://telegram.org/js/telegram-widget.js"]
    assert browser_errors == []
    browser_tab.context.close()


@pytest.mark.parametrize(
    ("word", "answer"),
    [
        ("оплата", "Как оплатить?"),
        ("ссылка", "Как добавить ссылку в приложение?"),
        ("айфон", "Как подключить iPhone, Android или компьютер?"),
    ],
)
def test_the_search_boxs_russian_examples_find_their_answers(
    shop: Shop, browser: Browser, word: str, answer: str
) -> None:
    page, errors = telegram_page(browser, init_data(5550203, "ru"), locale="ru-RU")
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app/help")
    search = page.get_by_role("searchbox")
    expect(search).to_have_attribute("placeholder", re.compile(word))  # the box's own example
    search.press_sequentially(word, delay=60)
    results = page.locator("#faq_results")
    expect(results).to_contain_text(answer)
    expect(results).not_to_contain_text("ничего не нашлось")
    shot(page, f"43-miniapp-search-{word}")
    # Each keystroke supersedes the search still in flight (hx-sync replace); on a slow machine htmx reports
    # those aborts on the console. Anything else is an error.
    superseded = ("htmx:sendAbort", "htmx:afterRequest")
    assert [error for error in errors if not error.startswith(tuple(f"console.error: {s}" for s in superseded))] == []
    page.context.close()


LIGHT = 40 * 1024  # bytes on the wire for a first visit, htmx included (issue 20)


def bytes_on_the_wire(page: Page) -> tuple[int, dict[str, int]]:
    """What the page cost over the network so far (compressed, headers included), per resource."""
    entries = page.evaluate(
        """() => [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
            .map((e) => [e.name, e.transferSize])"""
    )
    return sum(size for _, size in entries), {name.rsplit("/", 1)[-1][:40]: size for name, size in entries}


def test_a_first_visit_is_light_and_the_second_comes_from_the_cache(shop: Shop, browser: Browser) -> None:
    page, errors = telegram_page(browser, init_data(5550204))
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{shop.base_url}/app")
    expect(page.get_by_role("heading", name="Hello, Mia!")).to_be_visible()
    page.wait_for_load_state("networkidle")
    total, parts = bytes_on_the_wire(page)
    print(f"first visit: {total} bytes on the wire: {parts}")
    assert 0 < total < LIGHT, parts
    assert any(name.startswith("htmx-2.0.11.min.") for name in parts)  # htmx is in the count

    page.context.close()

    # Fingerprinted files are cached for good. (Playwright's request routing switches the HTTP cache off, so
    # this runs in a context without it, on a page every visitor can open.)
    context = browser.new_context()
    plain = context.new_page()
    plain.goto(f"{shop.base_url}/no-such-page")
    plain.goto(f"{shop.base_url}/no-such-page-either")
    static = {name: size for name, size in bytes_on_the_wire(plain)[1].items() if re.search(r"\.[0-9a-f]{8}\.", name)}
    assert len(static) >= 3 and all(size == 0 for size in static.values()), static
    context.close()
    assert errors == []
