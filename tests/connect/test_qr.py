"""QR codes: accessible, theme-coloured, freely scalable SVG whose path draws exactly segno's module matrix."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import segno
from jinja2 import Environment
from markupsafe import Markup

from app.connect.qr import QUIET_ZONE, qr_svg

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
