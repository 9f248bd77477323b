"""Client catalog: import deep links survive awkward subscription URLs, every guide step has its texts and
pictures, the visitor's platform is guessed from real User-Agent strings, and the guides macro renders."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import pytest
from jinja2 import Environment, FileSystemLoader

from app.connect import CLIENTS, PLATFORM_GUIDES, PLATFORMS, clients_for, detect_platform, get_client, guide_steps
from app.kit.assets import STATIC_DIR
from app.kit.i18n import LOCALES_DIR, Translator
from app.kit.templating import TEMPLATES_DIR

GUIDES_DIR = STATIC_DIR / "guides"
# Query characters, an already-encoded octet, "+", a space and Cyrillic: everything a link could trip over.
AWKWARD_URL = "https://sub.example.com/s/AbC-9_x?token=a1&flag=v2+ray&path=a%2Fb&name=тест пробел"
ALL_PLATFORM_CLIENTS = [(platform.code, client) for platform in PLATFORMS for client in clients_for(platform.code)]


def connect_catalog(language: str) -> dict[str, object]:
    return json.loads((LOCALES_DIR / language / "connect.json").read_text(encoding="utf-8"))


def query_param(link: str, name: str) -> str:
    """The parameter as Android's Uri.getQueryParameter returns it: percent-decoded, "+" left alone."""
    pairs = dict(pair.split("=", 1) for pair in urlsplit(link).query.split("&"))
    return unquote(pairs[name])


# --- deep links ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["hiddify", "streisand", "v2raytun"])
def test_appended_links_carry_the_url_verbatim_after_import(code: str) -> None:
    link = get_client(code).import_link(AWKWARD_URL)
    assert link is not None and link.isascii() and " " not in link
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.fragment) == (code, "import", "")
    # How Hiddify reads it back: path after "/" plus the query.
    rebuilt = parts.path[1:] + "?" + parts.query
    assert rebuilt.startswith("https://sub.example.com/s/AbC-9_x?token=a1&flag=v2+ray&path=a%2Fb&name=")
    assert unquote(rebuilt) == unquote(AWKWARD_URL)


@pytest.mark.parametrize("code", ["flclash", "clash_verge"])
def test_clash_links_carry_the_url_as_one_encoded_parameter(code: str) -> None:
    link = get_client(code).import_link(AWKWARD_URL)
    assert link is not None and link.isascii()
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc) == ("clash", "install-config")
    assert parse_qs(parts.query) == {"url": [AWKWARD_URL]}
    assert query_param(link, "url") == AWKWARD_URL


def test_v2rayng_link_survives_its_second_url_decoding() -> None:
    link = get_client("v2rayng").import_link(AWKWARD_URL)
    assert link is not None and link.isascii()
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc) == ("v2rayng", "install-config")
    assert set(parse_qs(parts.query)) == {"url"}
    # UrlSchemeActivity: getQueryParameter("url"), then URLDecoder.decode (which turns "+" into a space).
    assert unquote_plus(query_param(link, "url")) == AWKWARD_URL


def test_shadowrocket_link_is_unpadded_urlsafe_base64() -> None:
    link = get_client("shadowrocket").import_link(AWKWARD_URL)
    assert link is not None and link.startswith("shadowrocket://add/sub://")
    payload = link.removeprefix("shadowrocket://add/sub://")
    assert not set(payload) & set("+/=?&#")
    assert base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode() == AWKWARD_URL


def test_fragment_and_surrounding_spaces_are_dropped() -> None:
    for client in CLIENTS:
        assert client.import_link(f"  {AWKWARD_URL}#profile ") == client.import_link(AWKWARD_URL)


def test_clients_without_a_url_scheme_have_no_button_but_a_paste_step() -> None:
    for client in CLIENTS:
        has_link = client.import_link(AWKWARD_URL) is not None
        assert has_link == ("import" in client.flow), client.code
        assert has_link != ("paste" in client.flow), client.code
    assert get_client("v2rayn").import_link(AWKWARD_URL) is None
    assert get_client("v2rayu").import_link(AWKWARD_URL) is None


# --- catalog, steps, pictures ------------------------------------------------------------------------------------


def test_every_platform_has_clients_and_every_client_a_store_page() -> None:
    for platform in PLATFORMS:
        assert clients_for(platform.code), platform.code
    for client in CLIENTS:
        assert client.platforms
        for platform in client.platforms:
            assert client.store_url(platform).startswith("https://")


@pytest.mark.parametrize(("platform", "client"), ALL_PLATFORM_CLIENTS, ids=lambda v: getattr(v, "code", v))
def test_every_step_has_texts_in_both_languages_and_an_existing_picture(platform: str, client) -> None:
    steps = guide_steps(platform, client)
    assert steps[0].kind == "install" and steps[-1].kind in {"connect", "allow_vpn"}
    for language in ("ru", "en"):
        entries = connect_catalog(language)
        for step in steps:
            assert isinstance(entries.get(step.key), str), (language, step.key)
            assert isinstance(entries.get(step.alt_key), str), (language, step.alt_key)
        assert isinstance(entries.get(f"connect.store.{client.store_kind(platform)}"), str)
    for step in steps:
        assert (GUIDES_DIR / step.image).is_file(), step.image


def test_unsupported_platform_is_refused() -> None:
    with pytest.raises(ValueError):
        guide_steps("ios", get_client("v2rayn"))


def test_catalogs_have_the_same_keys_and_proper_plural_forms() -> None:
    ru, en = connect_catalog("ru"), connect_catalog("en")
    assert ru.keys() == en.keys()
    assert all(key.startswith("connect.") for key in ru)
    for key in ru:
        if isinstance(ru[key], dict) or isinstance(en[key], dict):
            assert set(ru[key]) == {"one", "few", "many"}, key
            assert set(en[key]) == {"one", "other"}, key
    for platform in PLATFORMS:
        assert platform.name_key in ru


@pytest.mark.parametrize("path", sorted(GUIDES_DIR.glob("*.svg")), ids=lambda p: p.name)
def test_illustrations_are_small_titled_svg(path: Path) -> None:
    assert path.stat().st_size < 4096
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")
    title = root[0]
    assert title.tag == "{http://www.w3.org/2000/svg}title" and (title.text or "").strip()


def test_every_illustration_is_used() -> None:
    used = {step.image for platform, client in ALL_PLATFORM_CLIENTS for step in guide_steps(platform, client)}
    assert used == {path.name for path in GUIDES_DIR.glob("*.svg")}


# --- platform detection ----------------------------------------------------------------------------------------

USER_AGENTS = {
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1": "ios",
    # Telegram's in-app WKWebView on iOS
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148": (
        "ios"
    ),
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 "
    "Mobile/15E148 Safari/604.1": "ios",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile "
    "Safari/537.36": "android",
    # Telegram's Android WebView
    "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/124.0.6367.179 Mobile Safari/537.36 Telegram-Android/10.14.5 (Samsung SM-A536B; Android 13; "
    "SDK 33; AVERAGE)": "android",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 "
    "Safari/537.36 Edg/125.0.0.0": "windows",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0": "windows",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15": "macos",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:126.0) Gecko/20100101 Firefox/126.0": "macos",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 "
    "Safari/537.36": "android",
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0": "android",
    "curl/8.5.0": "android",
    "": "android",
}


@pytest.mark.parametrize(("user_agent", "expected"), USER_AGENTS.items())
def test_detect_platform_on_real_user_agents(user_agent: str, expected: str) -> None:
    assert detect_platform(user_agent) == expected


def test_detect_platform_without_header() -> None:
    assert detect_platform(None) == "android"


# --- the guides macro ------------------------------------------------------------------------------------------


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def render_guides(language: str, subscription_url: str, current_platform: str) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    template = env.from_string(
        '{% from "components/connect_guides.html" import guides %}'
        "{{ guides(_, platform_guides, subscription_url, current_platform) }}"
    )
    return template.render(
        _=Translator(language),
        platform_guides=PLATFORM_GUIDES,
        subscription_url=subscription_url,
        current_platform=current_platform,
    )


@pytest.mark.parametrize("language", ["ru", "en"])
def test_guides_macro_renders_every_platform_with_working_links(language: str) -> None:
    html = render_guides(language, AWKWARD_URL, "ios")
    page = Collector()
    page.feed(html)

    details = page.all("details")
    assert [d["id"] for d in details] == [f"platform-{p.code}" for p in PLATFORMS]
    assert [d["id"] for d in details if "data-current" in d] == ["platform-ios"]
    assert not [d for d in details if "open" in d]  # collapsed: the page leads with the one-tap import

    hrefs = [a["href"] for a in page.all("a") if a.get("class") == "button"]
    expected = [client.import_link(AWKWARD_URL) for _, client in ALL_PLATFORM_CLIENTS if client.link]
    assert hrefs == expected  # the HTML parser undid the escaping, so the hrefs are exactly the links
    assert "&flag=" not in html and "&amp;flag=" in html

    stores = [a for a in page.all("a") if a.get("class") == "button secondary"]
    assert len(stores) == len(ALL_PLATFORM_CLIENTS)
    assert all(a["target"] == "_blank" and "noopener" in (a["rel"] or "") for a in stores)

    for img in page.all("img"):
        assert (GUIDES_DIR / (img["src"] or "").removeprefix("/static/guides/")).is_file()
        assert img["alt"] and not img["alt"].startswith("connect.")

    text = " ".join(page.text)
    assert "connect." not in text  # every key found its text
    assert "v2RayTun" in text and "Shadowrocket" in text


def test_guides_macro_escapes_a_hostile_subscription_url() -> None:
    html = render_guides("en", 'https://sub.example.com/s/x?a="><script>alert(1)</script>', "android")
    assert "<script>" not in html
    assert '"><' not in html
