"""The embedded demo's one-click admin: a button on the landing page signs in as the seeded demo owner, whose
pages say they are the demo; outside demo mode the route does not exist."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.config import Settings
from app.demo.seed import DEMO_STAFF_USERNAME, seed_demo
from app.models import StaffSession
from app.staff.sessions import ADMIN_COOKIE
from tests.admin.conftest import AdminHarness
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, serve, text_of

CSRF = re.compile(r'action="/admin/login/demo">\s*<input type="hidden" name="csrf_token" value="([^"]+)"')


@pytest.fixture
def admin_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, demo_mode=True)


async def test_the_landing_page_signs_in_the_demo_admin(admin: AdminHarness) -> None:
    assert await seed_demo(admin.db)
    await admin.db.commit()
    client = admin.new_client()
    landing = await client.get("/")
    assert landing.status_code == 200 and 'data-testid="demo-admin"' in landing.text
    token = CSRF.search(landing.text).group(1)

    refused = await client.post("/admin/login/demo", data={"csrf_token": "forged"})
    assert refused.status_code == 403 and ADMIN_COOKIE not in client.cookies

    signed_in = await client.post("/admin/login/demo", data={"csrf_token": token})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/admin"
    page = await client.get("/admin/account")
    assert page.status_code == 200
    text = text_of(page.text)
    assert DEMO_STAFF_USERNAME in text
    assert "Demo admin" in text or "Демо-админка" in text
    await admin.db.rollback()
    assert await admin.db.scalar(select(StaffSession.method)) == "demo"


async def test_there_is_no_demo_admin_outside_demo_mode(database_url: str, db) -> None:
    async with serve(make_settings(database_url)) as (_, client):
        response = await client.post("/admin/login/demo", data={"csrf_token": "x"})
        assert response.status_code == 404
