"""The admin shell: authentication at the router, the shell for a first load, the sidebar by permission."""

from __future__ import annotations

from tests.admin.conftest import AdminHarness
from tests.web import htmx, text_of


async def test_a_page_without_credentials_gets_the_shell_and_the_api_a_401(admin: AdminHarness) -> None:
    page = await admin.client.get("/admin/account")
    assert page.status_code == 200
    assert 'data-login="/admin/login?next=/admin/account"' in page.text

    api = await admin.client.get("/api/admin/me")
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "staff_not_authenticated"

    fragment = await admin.client.get("/admin/account", headers=htmx())
    assert fragment.status_code == 401


async def test_the_sidebar_links_only_what_the_role_may_open(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    page = await owner.get("/admin/account")
    assert page.status_code == 200
    assert "owner_one" in text_of(page.text)
    assert '<meta name="csrf-token"' in page.text
    assert "/static/uPlot-1.6.32.min.js" in page.text
