"""Rendering admin pages: the shared Templates with the admin's macros, toasts as out-of-band swaps, and an
HTMX-aware redirect. Section pages call `render(...)`, `toast(...)` and `redirect(...)` from here."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment

from app.admin.navigation import visible_sections
from app.kit.templating import TEMPLATES_DIR

ADMIN_COMPONENTS = TEMPLATES_DIR / "admin" / "components"
UPLOT_FILES = ("uPlot-1.6.32.min.js", "uPlot-1.6.32.min.css")


def install_components(env: Environment) -> None:
    """Each admin/components/<name>.html becomes the global `admin_<name>` (e.g. `admin_table.table(...)`),
    like the cabinet's components: globals, because a block rendered alone for HTMX runs no imports."""
    for path in sorted(ADMIN_COMPONENTS.glob("*.html")):
        env.globals[f"admin_{path.stem}"] = env.get_template(f"admin/components/{path.name}").module
    env.globals["uplot_js"], env.globals["uplot_css"] = UPLOT_FILES


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    toasts: list[tuple[str, str]] | None = None,
    **kwargs: Any,
) -> HTMLResponse:
    """A page (or, for HTMX, the block named by HX-Target), with `toasts` — (kind, message) pairs, kind one of
    success / error / info — appended as out-of-band swaps into the shell's toast region."""
    viewer = getattr(request.state, "staff_viewer", None)
    ctx = {"staff_viewer": viewer, "admin_nav": admin_nav(request), "toasts": toasts} | (context or {})
    response: HTMLResponse = request.app.state.templates.response(request, template, ctx, **kwargs)
    if toasts and is_htmx(request):
        response.body += toast_html(request, toasts).encode()
        response.headers["content-length"] = str(len(response.body))
    return response


def translate(request: Request, key: str, **params: Any) -> str:
    """A message in the viewer's language, for what Python composes (toasts)."""
    return request.app.state.templates.base_context(request)["_"](key, **params)


def toast_html(request: Request, toasts: list[tuple[str, str]]) -> str:
    return str(request.app.state.templates.env.globals["admin_toast"].oob(toasts))


def redirect(request: Request, url: str) -> Response:
    """After a successful post: HTMX follows HX-Redirect (a full page load); a plain form gets a 303."""
    if is_htmx(request):
        return Response(status_code=204, headers={"hx-redirect": url})
    return RedirectResponse(url, status_code=303)


def admin_nav(request: Request) -> list[dict[str, Any]]:
    """The sidebar: the sections of ADMIN.md that exist in this build (a GET route is registered) and that the
    viewer's permissions open, in ADMIN.md's order."""
    return visible_sections(request)
