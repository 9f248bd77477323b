"""QR codes as inline SVG: one <path> of dark modules drawn in currentColor, so the code takes the text colour
of whatever it sits in and scales crisply to any size the CSS gives it."""

from __future__ import annotations

import segno
from markupsafe import Markup, escape

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
    size, path = qr_path(data)
    label = escape(title)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" role="img" aria-label="{label}" '
        f'class="qr" shape-rendering="crispEdges"><title>{label}</title>'
        f'<path fill="currentColor" d="{path}"/></svg>'
    )
