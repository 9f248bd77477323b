"""What the cabinet's pages show, arranged for display: a browser session as "Chrome · Windows" rather than
its raw User-Agent string."""

from __future__ import annotations

import re

# First match wins: Edge, Opera, Yandex and Samsung say "Chrome" too, Chrome says "Safari", so the more
# specific names come first.
_BROWSERS = (
    (re.compile(r"\bEdg(e|A|iOS)?/"), "Edge"),
    (re.compile(r"\b(OPR|Opera)/"), "Opera"),
    (re.compile(r"\bYaBrowser/"), "Yandex Browser"),
    (re.compile(r"\bSamsungBrowser/"), "Samsung Internet"),
    (re.compile(r"\b(Firefox|FxiOS)/"), "Firefox"),
    (re.compile(r"\b(Chrome|CriOS|Chromium)/"), "Chrome"),
    (re.compile(r"\bVersion/[\d.]+.*\bSafari/"), "Safari"),
)
_SYSTEMS = (
    (re.compile(r"\biPhone\b"), "iPhone"),
    (re.compile(r"\biPad\b"), "iPad"),
    (re.compile(r"\bAndroid\b"), "Android"),
    (re.compile(r"\bWindows\b"), "Windows"),
    (re.compile(r"\bCrOS\b"), "ChromeOS"),
    (re.compile(r"\bMac OS X\b|\bMacintosh\b"), "macOS"),
    (re.compile(r"\bLinux\b"), "Linux"),
)


def _first(rules: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    return next((name for pattern, name in rules if pattern.search(text)), None)


def device_of(user_agent: str | None) -> tuple[str | None, str | None]:
    """(browser, operating system) named in a User-Agent header; None for a part it does not say."""
    text = user_agent or ""
    return _first(_BROWSERS, text), _first(_SYSTEMS, text)
