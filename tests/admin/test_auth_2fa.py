"""Two-factor sign-in required (ADMIN_REQUIRE_2FA): owners and admins enrol a TOTP secret before their first
session starts; other roles are not asked."""

from __future__ import annotations

import re

import pytest

from app.admin.auth import totp
from app.config import Settings
from app.staff.sessions import ADMIN_COOKIE
from tests.admin.conftest import AdminHarness
from tests.admin.test_auth import LOGIN_CSRF, sign_in
from tests.conftest import make_settings
from tests.web import BOT_TOKEN


@pytest.fixture
def admin_settings(database_url: str) -> Settings:
    return make_settings(database_url, bot_token=BOT_TOKEN, admin_require_2fa=True)


async def test_required_2fa_makes_an_owner_enrol_before_the_session_starts(admin: AdminHarness) -> None:
    client = admin.new_client()
    page = await sign_in(client, "owner_one")
    assert page.status_code == 200
    assert ADMIN_COOKIE not in client.cookies
    secret = re.search(r'name="secret" value="([A-Z2-7]+)"', page.text).group(1)
    ticket = re.search(r'name="ticket" value="([^"]+)"', page.text).group(1)
    token = LOGIN_CSRF.search(page.text).group(1)
    form = {"ticket": ticket, "secret": secret, "csrf_token": token, "next": "/admin/account"}

    wrong = await client.post("/admin/login/enrol", data=form | {"otp": "12345"})
    assert wrong.status_code == 422 and "does not match" in wrong.text
    tampered = await client.post("/admin/login/enrol", data=form | {"secret": "A" * 32, "otp": "123456"})
    assert tampered.status_code == 401
    assert ADMIN_COOKIE not in client.cookies

    done = await client.post("/admin/login/enrol", data=form | {"otp": totp.current_code(secret)})
    assert done.status_code == 303 and done.headers["location"] == "/admin/account"
    await admin.db.refresh(admin.staff["owner"])
    assert totp.decrypt_secret(admin.staff["owner"].totp_secret) == secret
    # Support is not a role that must enrol: straight in.
    assert (await sign_in(admin.new_client(), "support_one")).status_code == 303
