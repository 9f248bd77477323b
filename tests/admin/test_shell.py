"""The admin shell: authentication at the router, the shell for a first load, the sidebar by permission."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.admin.navigation import SECTIONS
from app.models import AuditLog
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


def sidebar(html: str) -> set[str]:
    nav = html.split('class="admin-nav"', 1)[1].split("</nav>", 1)[0]
    return set(re.findall(r'data-section="([a-z]+)"', nav))


async def test_the_sidebar_links_only_what_exists_and_the_role_may_open(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    page = await owner.get("/admin/account")
    assert page.status_code == 200
    assert "owner_one" in text_of(page.text)
    assert '<meta name="csrf-token"' in page.text
    assert "/static/uPlot-1.6.32.min.js" in page.text
    owner_sections = sidebar(page.text)
    # Every section of ADMIN.md is built now, and an owner may open each one.
    assert {section.key for section in SECTIONS} <= owner_sections

    support = sidebar((await (await admin.browser("support")).get("/admin/account")).text)
    assert {"dashboard", "users", "payments"} <= support
    assert not support & {"audit", "staff", "broadcasts", "experiments", "servers", "settings", "system"}
    marketing = sidebar((await (await admin.browser("marketing")).get("/admin/account")).text)
    assert "payments" not in marketing and "staff" not in marketing
    assert {"broadcasts", "experiments"} <= marketing


async def test_a_refused_permission_is_audited(admin: AdminHarness) -> None:
    support = await admin.browser("support")
    support_id = admin.staff["support"].id
    refused = await support.get("/admin/staff", headers={"accept": "application/json"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    await admin.db.rollback()
    row = await admin.db.scalar(select(AuditLog).where(AuditLog.action == "admin.denied"))
    assert row is not None and row.actor_id == str(support_id)
    assert row.after["permission"] == "staff:manage" and row.after["path"] == "/admin/staff"
