"""The VPN client apps we recommend per platform, their one-tap import links and the illustrated install guides.

Everything here is data: the "Get config" page renders it through components/connect_guides.html, and the
step texts live in app/locales/<lang>/connect.json.

Deep-link styles. Hiddify, v2rayNG and the Clash apps were checked against their sources and docs; Streisand,
v2RayTun and Shadowrocket are closed, so theirs follow the form the big panels (Remnawave, V2Board) ship:
- "appended" (Hiddify, Streisand, v2RayTun): the subscription URL follows `import/` verbatim. Hiddify rebuilds it
  from the link's path and query, so reserved characters must stay as they are; only characters that are not
  allowed in a URI at all (non-ASCII, spaces) are percent-encoded, as a browser would do anyway.
- "query" (v2rayNG, Clash family): the URL is one percent-encoded `url=` parameter.
- Shadowrocket: `sub://` plus the URL in unpadded URL-safe base64, so no `+`, `/` or `=` can be mangled on the way.
Clients without a URL scheme for subscriptions (v2rayN, V2rayU) get no button; their guide has a "paste" step.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote, urldefrag, urlsplit

IOS, ANDROID, WINDOWS, MACOS = "ios", "android", "windows", "macos"
DEFAULT_PLATFORM = ANDROID
MOBILE, DESKTOP = "mobile", "desktop"

# RFC 3986 reserved characters plus "%" (already-encoded octets stay as they are).
_URI_SAFE = ":/?#[]@!$&'()*+,;=%"


@dataclass(frozen=True, slots=True)
class Platform:
    code: str
    family: str  # mobile | desktop: picks the illustration set

    @property
    def name_key(self) -> str:
        return f"connect.platform.{self.code}"


PLATFORMS: tuple[Platform, ...] = (
    Platform(IOS, MOBILE),
    Platform(ANDROID, MOBILE),
    Platform(WINDOWS, DESKTOP),
    Platform(MACOS, DESKTOP),
)
_PLATFORMS_BY_CODE = {platform.code: platform for platform in PLATFORMS}


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # the step id: the guide puts the store link into "install" and the import button into "import"
    key: str  # catalog key of the text; rendered with app=<client name>
    image: str  # file name under webapp/static/guides/
    alt_key: str  # catalog key of the picture's alt text


def _subscription(url: str) -> str:
    # A fragment never reaches the server, and in an "appended" link it would be read as the profile name.
    return urldefrag(url.strip()).url


def _appended(prefix: str) -> Callable[[str], str]:
    def build(url: str) -> str:
        return prefix + quote(_subscription(url), safe=_URI_SAFE)

    return build


def _query(prefix: str, *, decodes_twice: bool = False) -> Callable[[str], str]:
    def build(url: str) -> str:
        value = _subscription(url)
        if decodes_twice:
            # v2rayNG runs URLDecoder over the already-decoded parameter: "+" would turn into a space and
            # "%2F" into "/", so those two get one extra level of escaping.
            value = value.replace("%", "%25").replace("+", "%2B")
        return prefix + quote(value, safe="")

    return build


def _shadowrocket(url: str) -> str:
    encoded = base64.urlsafe_b64encode(_subscription(url).encode()).decode().rstrip("=")
    return f"shadowrocket://add/sub://{encoded}"


@dataclass(frozen=True, slots=True)
class ClientApp:
    code: str
    name: str
    store_urls: Mapping[str, str]  # platform code -> store or official download page
    # Step ids: install, import and allow_vpn read the same for every client; any other id (paste, update,
    # connect) has its own text per client, connect.step.<id>.<client code>.
    flow: tuple[str, ...]
    link: Callable[[str], str] | None = None
    paid: bool = False

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(self.store_urls)

    def supports(self, platform: str) -> bool:
        return platform in self.store_urls

    def store_url(self, platform: str) -> str | None:
        return self.store_urls.get(platform)

    def store_kind(self, platform: str) -> str:
        """app_store | google_play | apk | download: picks the store button label and the install step text."""
        host = urlsplit(self.store_urls[platform]).hostname or ""
        if host == "apps.apple.com":
            return "app_store"
        if host == "play.google.com":
            return "google_play"
        return "apk" if platform == ANDROID else "download"

    def import_link(self, subscription_url: str) -> str | None:
        """The one-tap import deep link for this client, or None when it has no URL scheme for it."""
        return self.link(subscription_url) if self.link else None

    def steps(self, platform: str) -> list[Step]:
        return guide_steps(platform, self)


def _stores(**urls: str) -> Mapping[str, str]:
    return MappingProxyType(urls)


_IOS_FLOW = ("install", "import", "allow_vpn", "connect")
# Android asks for the VPN permission on the first connect, not on import.
_ANDROID_FLOW = ("install", "import", "connect", "allow_vpn")
_DESKTOP_FLOW = ("install", "import", "connect")
_HIDDIFY_DOWNLOAD = "https://github.com/hiddify/hiddify-app/releases"
_CLASH_VERGE_DOWNLOAD = "https://github.com/clash-verge-rev/clash-verge-rev/releases"

# Order matters: within a platform the first client is the one we recommend.
CLIENTS: tuple[ClientApp, ...] = (
    ClientApp(
        "v2raytun",
        "v2RayTun",
        _stores(ios="https://apps.apple.com/app/v2raytun/id6476628951"),
        _IOS_FLOW,
        _appended("v2raytun://import/"),
    ),
    ClientApp(
        "streisand",
        "Streisand",
        _stores(ios="https://apps.apple.com/app/streisand/id6450534064"),
        _IOS_FLOW,
        _appended("streisand://import/"),
    ),
    ClientApp(
        "shadowrocket",
        "Shadowrocket",
        _stores(ios="https://apps.apple.com/app/shadowrocket/id932747118"),
        _IOS_FLOW,
        _shadowrocket,
        paid=True,
    ),
    ClientApp(
        "hiddify",
        "Hiddify",
        _stores(
            android="https://play.google.com/store/apps/details?id=app.hiddify.com",
            windows=_HIDDIFY_DOWNLOAD,
            macos=_HIDDIFY_DOWNLOAD,
        ),
        _ANDROID_FLOW,
        _appended("hiddify://import/"),
    ),
    ClientApp(
        "v2rayng",
        "v2rayNG",
        _stores(android="https://play.google.com/store/apps/details?id=com.v2ray.ang"),
        _ANDROID_FLOW,
        _query("v2rayng://install-config?url=", decodes_twice=True),
    ),
    ClientApp(
        "flclash",
        "FlClash",
        _stores(android="https://github.com/chen08209/FlClash/releases"),
        _ANDROID_FLOW,
        _query("clash://install-config?url="),
    ),
    ClientApp(
        "clash_verge",
        "Clash Verge Rev",
        _stores(windows=_CLASH_VERGE_DOWNLOAD, macos=_CLASH_VERGE_DOWNLOAD),
        _DESKTOP_FLOW,
        _query("clash://install-config?url="),
    ),
    ClientApp(
        "v2rayn",
        "v2rayN",
        _stores(windows="https://github.com/2dust/v2rayN/releases"),
        ("install", "paste", "update", "connect"),
    ),
    # The spec named V2RayX, but it is unmaintained since 2019 and cannot speak VLESS; V2rayU is its maintained
    # counterpart on the same core family.
    ClientApp(
        "v2rayu",
        "V2rayU",
        _stores(macos="https://github.com/yanue/V2rayU/releases"),
        ("install", "paste", "connect"),
    ),
)
_CLIENTS_BY_CODE = {client.code: client for client in CLIENTS}


def get_platform(code: str) -> Platform:
    return _PLATFORMS_BY_CODE[code]


def get_client(code: str) -> ClientApp:
    return _CLIENTS_BY_CODE[code]


def clients_for(platform: str) -> list[ClientApp]:
    """The clients available on a platform, recommended first."""
    return [client for client in CLIENTS if client.supports(platform)]


def guide_steps(platform: str | Platform, client: ClientApp) -> list[Step]:
    """The illustrated install-and-connect steps of one client on one platform."""
    target = platform if isinstance(platform, Platform) else get_platform(platform)
    if not client.supports(target.code):
        raise ValueError(f"{client.name} is not available on {target.code}")
    steps = []
    for step in client.flow:
        if step == "allow_vpn" and target.family == DESKTOP:
            continue  # desktop clients switch on a system proxy or TUN without a permission prompt of their own
        if step == "install":
            key = f"connect.step.install.{client.store_kind(target.code)}"
        elif step == "import":
            key = f"connect.step.import.{'tap' if target.family == MOBILE else 'click'}"
        elif step == "allow_vpn":
            key = f"connect.step.allow_vpn.{target.code}"
        else:
            key = f"connect.step.{step}.{client.code}"
        picture = f"{target.family}_{step}"
        steps.append(Step(step, key, picture.replace("_", "-") + ".svg", f"connect.img.{picture}"))
    return steps


@dataclass(frozen=True, slots=True)
class Guide:
    """One client's install guide on one platform: all of it but the customer's own link, the same for everyone."""

    client: ClientApp
    steps: tuple[Step, ...]
    store_url: str
    store_kind: str


def _guides_of(platform: Platform) -> tuple[Guide, ...]:
    return tuple(
        Guide(
            client,
            tuple(guide_steps(platform, client)),
            client.store_urls[platform.code],
            client.store_kind(platform.code),
        )
        for client in clients_for(platform.code)
    )


# Built once: the connect page shows every platform's guides, and building them per visit (the clients available,
# their steps, store links) cost a tenth of a millisecond of template calls.
PLATFORM_GUIDES: tuple[tuple[Platform, tuple[Guide, ...]], ...] = tuple(
    (platform, _guides_of(platform)) for platform in PLATFORMS
)


_UA_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # iOS first: its user agents say "like Mac OS X".
    (re.compile(r"iPhone|iPad|iPod", re.IGNORECASE), IOS),
    # Android before Linux, and ChromeOS runs Android apps.
    (re.compile(r"Android|CrOS", re.IGNORECASE), ANDROID),
    (re.compile(r"Windows", re.IGNORECASE), WINDOWS),
    (re.compile(r"Macintosh|Mac OS X", re.IGNORECASE), MACOS),
)


def detect_platform(user_agent: str | None) -> str:
    """The visitor's platform code from a User-Agent header, Android when unknown (our most common visitor).

    An iPad in desktop mode reports itself as a Mac; the page lets the visitor switch, so that is good enough.
    """
    for pattern, platform in _UA_RULES:
        if user_agent and pattern.search(user_agent):
            return platform
    return DEFAULT_PLATFORM
