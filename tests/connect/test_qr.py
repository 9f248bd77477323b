"""QR codes: accessible, theme-coloured, freely scalable SVG whose path draws exactly segno's module matrix."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET

import segno
from jinja2 import Environment
from markupsafe import Markup
from redis.asyncio import Redis

from app.connect.qr import QUIET_ZONE, QrCodes, qr_svg

SVG = "{http://www.w3.org/2000/svg}"
URL = "https://sub.example.com/s/AbC-9_x?token=a1&name=тест"
RUN = re.compile(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z")


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def drawn_modules(path_data: str) -> set[tuple[int, int]]:
    """The dark cells a path of horizontal runs paints; fails on anything but such runs."""
    runs = RUN.findall(path_data)
    assert "".join(f"M{x} {y}h{w}v1h-{back}z" for x, y, w, back in runs) == path_data
    cells = set()
    for x, y, width, back in runs:
        assert width == back
        cells.update((int(x) + dx, int(y)) for dx in range(int(width)))
    return cells


def segno_modules(data: str) -> set[tuple[int, int]]:
    qr = segno.make_qr(data, error="m", boost_error=False)
    return {
        (x + QUIET_ZONE, y + QUIET_ZONE)
        for y, row in enumerate(qr.matrix_iter(scale=1, border=0))
        for x, dark in enumerate(row)
        if dark
    }


def test_svg_is_accessible_scalable_and_theme_coloured() -> None:
    svg = qr_svg(URL, title="Subscription QR")
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img" and root.get("aria-label") == "Subscription QR"
    assert root.get("width") is None and root.get("height") is None
    assert re.fullmatch(r"0 0 (\d+) \1", root.get("viewBox") or "")
    assert root[0].tag == f"{SVG}title" and root[0].text == "Subscription QR"
    paths = root.findall(f"{SVG}path")
    assert len(paths) == 1 and paths[0].get("fill") == "currentColor"


def test_path_draws_exactly_the_level_m_matrix_inside_a_quiet_zone() -> None:
    for data in (URL, "x", "https://example.com/" + "a" * 300):
        root = parse(qr_svg(data, title="QR"))
        size = int((root.get("viewBox") or "").split()[2])
        qr = segno.make_qr(data, error="m", boost_error=False)
        assert size == qr.symbol_size(border=QUIET_ZONE)[0]
        cells = drawn_modules(root.find(f"{SVG}path").get("d") or "")
        # The matrix embeds the format information, so equality also pins error correction level M.
        assert cells == segno_modules(data)
        assert all(QUIET_ZONE <= x < size - QUIET_ZONE and QUIET_ZONE <= y < size - QUIET_ZONE for x, y in cells)


def test_different_data_gives_different_codes() -> None:
    first = parse(qr_svg("https://sub.example.com/s/one", title="QR")).find(f"{SVG}path")
    second = parse(qr_svg("https://sub.example.com/s/two", title="QR")).find(f"{SVG}path")
    assert first.get("d") != second.get("d")


def test_title_is_escaped_and_the_result_is_safe_markup() -> None:
    svg = qr_svg(URL, title='Scan "me" <now> & go')
    assert isinstance(svg, Markup)
    root = parse(svg)
    assert root.get("aria-label") == root[0].text == 'Scan "me" <now> & go'
    rendered = Environment(autoescape=True).from_string("<div>{{ qr }}</div>").render(qr=svg)
    assert rendered == f"<div>{svg}</div>"


async def test_codes_are_kept_in_redis_by_their_link_and_never_shown_for_another(redis_url: str) -> None:
    """The connect page's codes: drawn once, read back from Redis on the next visit, each under its own link's
    hash (a reissued link is another key: never a stale code, never another customer's), expiring after a day."""
    client = Redis.from_url(redis_url)
    codes = QrCodes(client)
    other = URL.replace("AbC", "XyZ")
    try:
        first = await codes.svg(URL, title="QR")
        assert await codes.svg(URL, title="QR") == first == qr_svg(URL, title="QR")
        assert await codes.svg(other, title="QR") == qr_svg(other, title="QR") != first
        key = QrCodes.KEY_PREFIX + hashlib.sha256(URL.encode()).hexdigest()
        assert 0 < await client.ttl(key) <= 86400
        await client.set(key, "21:M4 4h1v1h-1z")  # what is kept is what is shown
        assert drawn_modules(parse(await codes.svg(URL, title="QR"))[1].get("d") or "") == {(4, 4)}
        assert drawn_modules(parse(await codes.svg(other, title="QR"))[1].get("d") or "") == segno_modules(other)
    finally:
        await client.aclose()


async def test_codes_are_drawn_without_redis_and_while_it_is_unreachable() -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    try:
        assert await QrCodes(unreachable).svg(URL, title="QR") == qr_svg(URL, title="QR")
    finally:
        await unreachable.aclose()
    assert await QrCodes(None).svg(URL, title="QR") == qr_svg(URL, title="QR")
