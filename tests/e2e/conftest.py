"""End-to-end fixtures: the real `vpnshop demo` process, an OIDC provider emulator, and Debian's Chromium
driven by Playwright (never a downloaded browser). Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import IN_CI
from tests.demo_process import start_demo, stop, wait_healthy
from tests.emulators.harness import free_port
from tests.emulators.oidc import OidcEmulator, OidcHub, OidcUser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
BOT_TOKEN = "7000001:e2e-bot-token"
STUB = (Path(__file__).parent / "telegram_stub.js").read_text()

pytestmark = pytest.mark.e2e


def chromium_executable() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Shop:
    base_url: str
    google: OidcEmulator


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The embedded demo as a customer starts it, with Telegram sign-in and one OIDC provider configured."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with OidcHub.serve() as hub:
        google = OidcEmulator(
            redirect_uris=[f"{base}/auth/oidc/google/callback"],
            user=OidcUser(subject="google-e2e", email="olga@example.com", name="Olga"),
        )
        issuer = hub.mount(google, "google")
        provider = {
            "name": "google",
            "title": "Google",
            "client_id": google.client_id,
            "client_secret": google.client_secret,
            "server_metadata_url": f"{issuer}/.well-known/openid-configuration",
        }
        process = start_demo(
            tmp_path_factory.mktemp("demo"),
            port,
            BOT_TOKEN=BOT_TOKEN,
            BOT_USERNAME="vpnshop_demo_bot",
            SUPPORT_USERNAME="@vpnshop_help",
            OIDC_PROVIDERS=json.dumps([provider]),
            # Every browser of the suite comes from 127.0.0.1 to this one process, minute after minute: the
            # per-address and per-customer limits (600 and 120 a minute) would answer 429 to pages and static
            # files here (seen: unstyled pages, a missing pay button). Their own tests are in tests/security.
            RATE_LIMIT_PER_IP_PER_MINUTE="100000",
            RATE_LIMIT_PER_USER_PER_MINUTE="100000",
        )
        try:
            wait_healthy(base, process)
            yield Shop(base, google)
        finally:
            output = stop(process)
            (ROOT / "test-output").mkdir(exist_ok=True)
            (ROOT / "test-output" / "e2e-demo.log").write_text(output)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module-scoped: Playwright's sync API runs an event loop in this thread while it is open, and the async
    # tests that follow need the thread free again.
    executable = chromium_executable()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


class PageErrors(list[str]):
    """JavaScript errors and failed console messages seen on a page; a test ends by asserting there are none."""


def watch(page: Page) -> PageErrors:
    errors = PageErrors()
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    # A refused or blocked request (a 4xx the page shows, telegram.org unreachable) is logged as a failed
    # resource; that is not a script error.
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    return errors


THEMES = {
    "dark": {"bg_color": "#17212b", "text_color": "#f5f5f5", "hint_color": "#708499", "link_color": "#6ab3f3",
             "button_color": "#5288c1", "button_text_color": "#ffffff", "secondary_bg_color": "#232e3c",
             "section_bg_color": "#17212b"},
    "light": {"bg_color": "#ffffff", "text_color": "#000000", "hint_color": "#707579", "link_color": "#2481cc",
              "button_color": "#2481cc", "button_text_color": "#ffffff", "secondary_bg_color": "#f1f1f1",
              "section_bg_color": "#ffffff"},
}  # fmt: skip


def launch_hash(init_data: str, theme: str = "dark") -> str:
    """The launch parameters a Telegram client puts in the Mini App's address (docs: "Launch Parameters")."""
    params = {
        "tgWebAppData": init_data,
        "tgWebAppVersion": "8.0",
        "tgWebAppPlatform": "android",
        "tgWebAppThemeParams": json.dumps(THEMES[theme]),
    }
    return urlencode(params, quote_via=quote)


def telegram_page(
    browser: Browser,
    init_data: str,
    *,
    width: int = 390,
    locale: str = "en-US",
    theme: str = "dark",
    telegram_js: str = "stub",
) -> tuple[Page, PageErrors]:
    """A phone-sized page inside a simulated Telegram client. The first page the tab opens gets the launch
    parameters in its hash, as Telegram opens a Mini App; telegram-web-app.js is answered by our stub, or
    (`telegram_js="hang"`) never answered, as where telegram.org is blocked."""
    context = browser.new_context(
        viewport={"width": width, "height": 844},
        device_scale_factor=2,
        locale=locale,
        color_scheme="dark" if theme == "dark" else "light",
    )
    fragment = launch_hash(init_data, theme)
    context.add_init_script(
        "if (location.protocol.startsWith('http') && !sessionStorage.getItem('vpnshop.initData')"
        " && !sessionStorage.getItem('__telegram__initParams') && location.hash.indexOf('tgWebAppData') < 0)"
        f" history.replaceState(history.state, '', location.pathname + location.search + '#' + {json.dumps(fragment)});"
    )
    if telegram_js == "hang":
        context.route("https://telegram.org/**", lambda route: None)  # never answered
    else:
        context.route(
            "https://telegram.org/**",
            lambda route: route.fulfill(status=200, content_type="application/javascript", body=STUB),
        )
    page = context.new_page()
    return page, watch(page)


def browser_page(
    browser: Browser, locale: str = "en-US", *, telegram_org: str = "refused", width: int = 1100
) -> tuple[Page, PageErrors]:
    """A plain browser where telegram.org does not load, as when Telegram is blocked: the connection is
    refused, or (`telegram_org="hang"`) never answered, as many blocks behave."""
    context = browser.new_context(viewport={"width": width, "height": 900}, locale=locale)
    if telegram_org == "hang":
        context.route("https://telegram.org/**", lambda route: None)  # never answered
    else:
        context.route("https://telegram.org/**", lambda route: route.abort())
    page = context.new_page()
    errors = watch(page)
    return page, errors


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
