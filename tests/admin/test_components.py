"""The building blocks render as documented: the data table (sort links keep the state, a row class, empty state,
pager), metric cards, charts, form fields with inline errors, confirm buttons and toasts."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from starlette.requests import Request

from app.admin.charts import series_data
from app.admin.forms import parse_form
from app.admin.rendering import install_components
from app.admin.tables import ListState, Page, decode_cursor, encode_cursor
from app.kit.errors import ValidationFailed
from app.kit.i18n import Translator
from app.kit.templating import create_environment


@pytest.fixture(scope="module")
def env():
    environment = create_environment()
    install_components(environment)
    return environment


def render(env, source: str, **context) -> str:
    return env.from_string(source).render(_=Translator("en"), **context)


def request(query: str = "") -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/admin/things", "query_string": query.encode(), "headers": []}
    )


def test_list_state_reads_and_writes_the_url() -> None:
    state = ListState.from_request(
        request("q=ann&status=active&sort=name&dir=asc&junk=1"),
        sorts=("id", "name"),
        default_sort="id",
        filters=("status",),
    )
    assert state.params == {"q": "ann", "status": "active"} and state.sort == "name" and not state.desc
    assert state.sort_url("name") == "/admin/things?q=ann&status=active&sort=name&dir=desc"
    assert state.sort_url("id") == "/admin/things?q=ann&status=active&sort=id&dir=desc"
    assert state.with_filter("status", None) == "/admin/things?q=ann&sort=name&dir=asc"
    for query in ("sort=password", "dir=up", "limit=0", "limit=5000", "limit=x"):
        with pytest.raises(ValidationFailed):
            ListState.from_request(request(query), sorts=("id",), default_sort="id")
    assert decode_cursor(encode_cursor("2026-01-01", 7)) == ("2026-01-01", 7)
    with pytest.raises(ValidationFailed):
        decode_cursor("not-a-cursor!")


def test_the_table_keeps_state_in_its_links_and_marks_rows(env) -> None:
    state = ListState.from_request(request("q=ann"), sorts=("id", "name"), default_sort="id")
    page = Page([SimpleNamespace(id=1, name="Ann", bad=True), SimpleNamespace(id=2, name="Bob", bad=False)], "CUR")
    html = render(
        env,
        '{% call(row) admin_table.table(_, view, [("name", "Name", True), ("id", "Id", False)], page,'
        " row_class=mark) %}<td>{{ row.name }}</td><td>{{ row.id }}</td>{% endcall %}",
        view=state,
        page=page,
        mark=lambda row: "mismatch" if row.bad else "",
    )
    assert 'id="list"' in html and 'hx-swap="outerHTML"' in html
    assert "/admin/things?q=ann&amp;sort=name&amp;dir=desc" in html  # sort link keeps the search
    assert html.count('class="mismatch"') == 1
    assert 'rel="next"' in html and "cursor=CUR" in html
    empty = render(
        env, "{% call(row) admin_table.table(_, view, [], page) %}{% endcall %}", view=state, page=Page([], None)
    )
    assert "Nothing matches." in empty and 'rel="next"' not in empty


def test_metric_chart_form_confirm_and_toast(env) -> None:
    card = render(env, '{{ admin_metric.card("Revenue", "1 000 ₽", delta=-12.5, refresh="/admin/x", id="rev") }}')
    assert (
        "1 000 ₽" in card
        and "-12.5%" in card
        and 'class="metric-delta down"' in card
        and 'hx-trigger="every 10s"' in card
    )

    data = series_data([date(2026, 12, 1), date(2026, 12, 2)], [("DAU", [3, None])], zone=ZoneInfo("UTC"))
    assert data == {"x": [1796083200, 1796169600], "series": [{"label": "DAU", "values": [3, None]}], "unit": ""}
    chart = render(env, '{{ admin_chart.chart("dau", data, "DAU") }}', data=data)
    assert 'class="uplot-chart"' in chart and "&#34;DAU&#34;" in chart
    with pytest.raises(ValueError):
        series_data([date(2026, 12, 1)], [("DAU", [1, 2])], zone=ZoneInfo("UTC"))

    from pydantic import BaseModel, Field

    class Days(BaseModel):
        days: int = Field(ge=1, le=365)

    model, errors = parse_form(Days, {"days": "0", "csrf_token": "x"})
    assert model is None and "days" in errors
    field = render(env, '{{ admin_form.field("days", "Days", "0", errors, type="number") }}', errors=errors)
    assert 'aria-invalid="true"' in field and 'class="field-error"' in field and "greater than or equal to 1" in field
    assert parse_form(Days, {"days": "7"})[0] == Days(days=7)

    typed = render(env, '{{ admin_confirm.button("Run", "/admin/bulk", "Sure?", "tok", typed="EXTEND 3") }}')
    assert 'data-confirm-typed="EXTEND 3"' in typed and "hx-confirm" not in typed and 'value="tok"' in typed
    plain = render(env, '{{ admin_confirm.button("End", "/admin/x", "Sure?", "tok") }}')
    assert 'hx-confirm="Sure?"' in plain
    toast = render(env, '{{ admin_toast.oob([("success", "Saved <b>")]) }}')
    assert 'hx-swap-oob="beforeend:#toasts"' in toast and "Saved &lt;b&gt;" in toast
