"""QR codes as inline SVG: one <path> of dark modules drawn in currentColor, so the code takes the text colour
of whatever it sits in and scales crisply to any size the CSS gives it."""

from __future__ import annotations

import contextlib
import functools
import hashlib

import segno
from markupsafe import Markup, escape
from redis.asyncio import Redis

from app.kit.ratelimit import UNREACHABLE

QUIET_ZONE = 4  # modules; the QR specification's minimum for reliable scanning


def qr_path(data: str) -> tuple[int, str]:
    """(side of the symbol in modules including the quiet zone, SVG path data of the dark modules)."""
    # Level M survives a smudged or partly glared screen; boost_error=False keeps it exactly M, as specified.
    qr = segno.make_qr(data, error="m", boost_error=False)
    commands = []
    for y, row in enumerate(qr.matrix_iter(scale=1, border=0)):
        x = 0
        cells = list(row)
        while x < len(cells):
            if not cells[x]:
                x += 1
                continue
            start = x
            while x < len(cells) and cells[x]:
                x += 1
            # One rectangle per horizontal run keeps the path short (about a third of one per module).
            commands.append(f"M{start + QUIET_ZONE} {y + QUIET_ZONE}h{x - start}v1h-{x - start}z")
    width, _ = qr.symbol_size(border=QUIET_ZONE)
    return width, "".join(commands)


def qr_svg(data: str, *, title: str) -> Markup:
    """An accessible inline SVG QR code of `data`; `title` is its accessible name.

    The quiet zone is transparent: put the code on a light surface with a dark text colour (e.g. CSS
    `color: #000; background: #fff`) for scanners that cannot read inverted codes.
    """
    return _svg(*qr_path(data), title=title)


def _svg(size: int, path: str, *, title: str) -> Markup:
    label = escape(title)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" role="img" aria-label="{label}" '
        f'class="qr" shape-rendering="crispEdges"><title>{label}</title>'
        f'<path fill="currentColor" d="{path}"/></svg>'
    )


class QrCodes:
    """QR codes of subscription links, which the connect page shows on every visit: drawing one costs milliseconds
    (segno tries all eight masks), reading it back a Redis round trip. Kept by a hash of the link itself, so a
    reissued link is another key and a code can never be stale or anybody else's; unused codes expire after a day.
    Without Redis (the demo) the last few are kept in the process; while Redis is unreachable they are drawn."""

    TTL_SECONDS = 86400
    KEY_PREFIX = "qr:"

    def __init__(self, redis: Redis | None) -> None:
        self._redis = redis

    async def svg(self, link: str, *, title: str) -> Markup:
        if self._redis is None:
            return _svg(*_drawn_recently(link), title=title)
        key = self.KEY_PREFIX + hashlib.sha256(link.encode()).hexdigest()
        # Redis away: the code is drawn and not kept. No warning of its own here: every request's rate limit
        # already reports Redis unreachable (app/kit/ratelimit.py, once a minute).
        try:
            kept = await self._redis.get(key)
        except UNREACHABLE:
            return qr_svg(link, title=title)
        if kept is not None:
            size, _, path = kept.decode().partition(":")
            return _svg(int(size), path, title=title)
        size, path = qr_path(link)
        with contextlib.suppress(*UNREACHABLE):
            await self._redis.set(key, f"{size}:{path}", ex=self.TTL_SECONDS)
        return _svg(size, path, title=title)


@functools.lru_cache(maxsize=256)
def _drawn_recently(link: str) -> tuple[int, str]:
    return qr_path(link)
