"""HTMX block rendering: a request with HX-Request and HX-Target gets only that block; others the page."""

from __future__ import annotations

from datetime import UTC
from types import SimpleNamespace

from jinja2 import DictLoader, Environment
from starlette.requests import Request

from app.kit.templating import Templates

PAGE = """<html><body>{% block header %}<h1>{{ title }}</h1>{% endblock %}
<div id="status">{% block status %}<p>{{ _("nav.home") }}: {{ status }}</p>{% endblock %}</div></body></html>"""


def make_request(headers: dict[str, str]) -> Request:
    settings = SimpleNamespace(default_language="en", zone=UTC)
    app = SimpleNamespace(state=SimpleNamespace(settings=settings))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "app": app,
        "state": {},
    }
    return Request(scope)


def templates() -> Templates:
    return Templates(Environment(loader=DictLoader({"page.html": PAGE}), autoescape=True))


def test_full_page_without_htmx() -> None:
    body = templates().response(make_request({}), "page.html", {"title": "T", "status": "ok"}).body.decode()
    assert body.startswith("<html>") and "<h1>T</h1>" in body and "Home: ok" in body


def test_htmx_request_gets_only_the_targeted_block() -> None:
    request = make_request({"HX-Request": "true", "HX-Target": "status"})
    body = templates().response(request, "page.html", {"title": "T", "status": "ok"}).body.decode()
    assert body == "<p>Home: ok</p>"


def test_htmx_target_that_is_not_a_block_gets_the_page() -> None:
    request = make_request({"HX-Request": "true", "HX-Target": "elsewhere"})
    body = templates().response(request, "page.html", {"title": "T", "status": "ok"}).body.decode()
    assert "<h1>T</h1>" in body


def test_values_are_escaped() -> None:
    body = templates().response(make_request({}), "page.html", {"title": "<script>", "status": "x"}).body.decode()
    assert "<script>" not in body and "&lt;script&gt;" in body
