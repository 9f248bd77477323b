"""Jinja2 templates with block rendering for HTMX: a request with `HX-Request` and a target gets only that
block (block name = element id = hx-target); a normal request gets the whole page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, nodes, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from app.kit.assets import asset_url
from app.kit.formatting import format_bytes, format_date, format_date_only, format_number, format_percentage
from app.kit.i18n import Translator, pick_language

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES_DIR = ROOT / "webapp" / "templates"
HTMX_FILE = "htmx-2.0.11.min.js"


def create_environment(*, auto_reload: bool = False) -> Environment:
    """`auto_reload` re-reads changed template files (development); off, no request stats the files."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        auto_reload=auto_reload,
        autoescape=select_autoescape(["html", "xml"]),
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["htmx_file"] = HTMX_FILE
    env.globals["asset"] = asset_url
    env.globals["format_date"] = format_date
    env.globals["format_bytes"] = format_bytes
    env.globals["format_date_only"] = format_date_only
    env.globals["format_number"] = format_number
    env.globals["format_percentage"] = format_percentage
    # Each components/<name>.html is a global `<name>` (e.g. `ui.nav(...)`), not a `{% from %}` import: an
    # import runs in the template's top level, which a block rendered alone for HTMX never executes.
    for path in sorted((TEMPLATES_DIR / "components").glob("*.html")):
        env.globals[path.stem] = env.get_template(f"components/{path.name}").module
    return env


class Templates:
    def __init__(self, env: Environment | None = None, *, auto_reload: bool = False) -> None:
        self.env = env or create_environment(auto_reload=auto_reload)
        self._layouts: dict[str | None, str | None] = {}

    def render_block(self, template_name: str, block: str, context: dict[str, Any]) -> str:
        return self._render_block(self.env.get_template(template_name), block, context)

    @staticmethod
    def _render_block(template: Template, block: str, context: dict[str, Any]) -> str:
        if block not in template.blocks:
            raise LookupError(f"{template.name} has no block {block!r}")
        return "".join(template.blocks[block](template.new_context(context)))

    def layout_of(self, name: str | None) -> str | None:
        """The layout a template finally extends (the admin's pages have their own, without the frame)."""
        if name not in self._layouts:
            source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
            parent = next(self.env.parse(source).find_all(nodes.Extends), None)
            extends = parent.template.value if parent and isinstance(parent.template, nodes.Const) else None
            self._layouts[name] = self.layout_of(extends) if extends else name
        return self._layouts[name]

    def render_frame(self, page: Template, context: dict[str, Any]) -> str:
        """base.html's frame for a page swapped in by HTMX (out of band): the page's title, language and the
        demo badge, so they follow the customer's language from the first page on and right after a switch."""
        base = self.env.get_template("base.html")
        title = self._render_block(page if "title" in page.blocks else base, "title", context)
        return self._render_block(base, "frame", context | {"page_title": title})

    def render(self, template_name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(template_name).render(context)

    def response(
        self,
        request: Request,
        template_name: str,
        context: dict[str, Any] | None = None,
        *,
        block: str | None = None,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """The whole page, or only `block` for an HTMX request (by default the block named by HX-Target)."""
        full_context = self.base_context(request) | (context or {})
        template = self.env.get_template(template_name)
        if block is None and request.headers.get("hx-request") == "true":
            target = request.headers.get("hx-target")
            if target and target in template.blocks:
                block = target
        body = self._render_block(template, block, full_context) if block else template.render(full_context)
        if block == "content" and self.layout_of(template.name) == "base.html":
            body += self.render_frame(template, full_context)
        return HTMLResponse(body, status_code=status_code, headers=headers)

    @staticmethod
    def base_context(request: Request) -> dict[str, Any]:
        settings = request.app.state.settings
        # Signed-in users have their own language; anonymous visitors (sign-in page) get their browser's.
        language = getattr(request.state, "language", None) or pick_language(
            request.headers.get("accept-language", "").split(",")[0].split(";")[0], settings.default_language
        )
        return {
            "request": request,
            "settings": settings,
            "zone": settings.zone,
            "viewer": getattr(request.state, "viewer", None),
            "csrf_token": getattr(request.state, "csrf_token", ""),
            "language": language,
            "_": Translator(language, settings.zone),
            "csp_nonce": getattr(request.state, "csp_nonce", ""),
        }
