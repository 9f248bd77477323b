"""Staff sign-in in a browser: password, TOTP (enrolment and check, replay refused), lockout per account and per
address, the admin's own cookie with idle timeout and CSRF, sign-in by Telegram initData, sign-out."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import func, select

from app.admin.auth import totp
from app.admin.auth.service import ATTEMPTS_PER_IP, MAX_FAILURES
from app.kit.clock import utcnow
from app.models import AuditLog, Staff, StaffSession
from app.staff.sessions import ADMIN_COOKIE
from tests.admin.conftest import PASSWORD, AdminHarness
from tests.web import htmx, tma

LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def login_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/admin/login")
    assert page.status_code == 200
    match = LOGIN_CSRF.search(page.text)
    assert match
    return match.group(1)


async def sign_in(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, otp: str = "", next: str = "/admin"
) -> httpx.Response:
    token = await login_form(client)
    data = {"username": username, "password": password, "otp": otp, "csrf_token": token, "next": next}
    return await client.post("/admin/login", data=data)


async def audit_actions(admin: AdminHarness, action: str) -> int:
    await admin.db.rollback()  # a fresh snapshot: the app committed in its own sessions
    return await admin.db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == action)) or 0


async def test_password_sign_in_sets_the_admin_cookie_and_opens_the_admin(admin: AdminHarness) -> None:
    client = admin.new_client()
    response = await sign_in(client, "support_one", next="/admin/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/account"
    cookie = response.headers["set-cookie"]
    assert (
        cookie.startswith(f"{ADMIN_COOKIE}=") and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    )

    page = await client.get("/admin/account")
    assert page.status_code == 200 and "support_one" in page.text
    # The customers' cookie name is another: a staff cookie never signs anyone into the cabinet, nor back.
    assert "vpnshop_session" not in client.cookies
    await admin.db.refresh(admin.staff["support"])
    assert admin.staff["support"].last_login_at is not None
    assert await audit_actions(admin, "admin.signed_in") == 1


async def test_wrong_password_is_refused_with_the_form_shown_again(admin: AdminHarness) -> None:
    client = admin.new_client()
    response = await sign_in(client, "support_one", password="wrong-password-1")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert 'value="support_one"' in response.text  # the username is kept
    assert ADMIN_COOKIE not in client.cookies
    unknown = await sign_in(client, "nobody_here", password="wrong-password-1")
    assert unknown.status_code == 401 and "Wrong username or password" in unknown.text
    assert await audit_actions(admin, "admin.login_failed") == 2


async def test_empty_fields_and_a_foreign_form_are_refused(admin: AdminHarness) -> None:
    client = admin.new_client()
    token = await login_form(client)
    empty = await client.post("/admin/login", data={"username": "", "password": "", "csrf_token": token})
    assert empty.status_code == 422
    assert empty.text.count('class="field-error"') == 2
    forged = await client.post(
        "/admin/login", data={"username": "owner_one", "password": PASSWORD, "csrf_token": "not-the-cookie"}
    )
    assert forged.status_code == 403
    assert ADMIN_COOKIE not in client.cookies


async def test_an_open_redirect_after_sign_in_is_not_followed(admin: AdminHarness) -> None:
    for target in ("https://evil.example/admin", "//evil.example", "/app", "/admin//evil.example"):
        response = await sign_in(admin.new_client(), "support_one", next=target)
        assert response.headers["location"] == "/admin", target


async def test_account_locks_after_repeated_failures_even_for_the_right_password(admin: AdminHarness) -> None:
    client = admin.new_client()
    for _ in range(MAX_FAILURES):
        assert (await sign_in(client, "admin_one", password="wrong-password-1")).status_code == 401
    locked = await sign_in(client, "admin_one")  # the right password, too late
    assert locked.status_code == 429
    assert "locked" in locked.text
    assert int(locked.headers["retry-after"]) > 0
    assert ADMIN_COOKIE not in client.cookies
    await admin.db.refresh(admin.staff["admin"])
    assert admin.staff["admin"].locked_until is not None
    assert await audit_actions(admin, "staff.locked") == 1
    # Another account from the same place is not locked by it.
    assert (await sign_in(admin.new_client(), "support_one")).status_code == 303


async def test_the_lock_ends_after_its_time(admin: AdminHarness, freeze) -> None:
    clock = freeze(utcnow())
    client = admin.new_client()
    for _ in range(MAX_FAILURES):
        await sign_in(client, "admin_one", password="wrong-password-1")
    assert (await sign_in(client, "admin_one")).status_code == 429
    clock.advance(minutes=16)
    assert (await sign_in(client, "admin_one")).status_code == 303


async def test_one_address_is_limited_across_usernames(admin: AdminHarness) -> None:
    client = admin.new_client()
    for attempt in range(ATTEMPTS_PER_IP):
        assert (await sign_in(client, f"guess_{attempt}", password="wrong-password-1")).status_code == 401
    refused = await sign_in(client, "support_one")
    assert refused.status_code == 429
    assert "Too many sign-in attempts" in refused.text


async def enrol(admin: AdminHarness, staff: Staff) -> str:
    """Give `staff` a TOTP secret directly; returns it."""
    secret = totp.new_secret()
    staff.totp_secret = totp.encrypt_secret(secret)
    await admin.db.commit()
    return secret


async def test_totp_is_asked_for_checked_and_never_accepted_twice(admin: AdminHarness) -> None:
    secret = await enrol(admin, admin.staff["admin"])
    client = admin.new_client()
    missing = await sign_in(client, "admin_one")
    assert missing.status_code == 401 and "6-digit code" in missing.text
    wrong = await sign_in(client, "admin_one", otp="000000" if totp.current_code(secret) != "000000" else "111111")
    assert wrong.status_code == 401 and "code is wrong" in wrong.text
    code = totp.current_code(secret)
    assert (await sign_in(client, "admin_one", otp=code)).status_code == 303
    replay = await sign_in(admin.new_client(), "admin_one", otp=code)
    assert replay.status_code == 401 and "already been used" in replay.text


async def test_state_changes_need_the_session_csrf_token(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    del owner.headers["x-csrf-token"]
    refused = await owner.post("/admin/account/2fa", headers={"accept": "application/json"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    wrong = await owner.post("/admin/account/2fa", data={"csrf_token": "x" * 64})
    assert wrong.status_code == 403


async def test_an_idle_session_ends(admin: AdminHarness, freeze) -> None:
    clock = freeze(utcnow())
    owner = await admin.browser("owner")
    assert (await owner.get("/admin/account")).status_code == 200
    clock.advance(minutes=admin.settings.admin_idle_timeout_minutes - 1)
    assert (await owner.get("/admin/account")).status_code == 200  # activity keeps it alive
    clock.advance(minutes=admin.settings.admin_idle_timeout_minutes + 1)
    assert (await owner.get("/api/admin/me")).status_code == 401


async def test_sign_out_revokes_the_session(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    response = await owner.post("/admin/logout")
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    await admin.db.rollback()
    assert (
        await admin.db.scalar(select(func.count()).select_from(StaffSession).where(StaffSession.revoked_at.is_(None)))
        == 0
    )
    assert (await owner.get("/api/admin/me")).status_code == 401


async def test_a_linked_staff_member_is_signed_in_by_telegram_init_data(admin: AdminHarness) -> None:
    page = await admin.client.get("/admin/account", headers=tma(user_id=90001) | htmx())
    assert page.status_code == 200 and "owner_one" in page.text
    me = await admin.client.get("/api/admin/me", headers=tma(user_id=90001))
    assert me.json()["username"] == "owner_one"


async def test_telegram_users_who_are_not_staff_are_refused_and_audited(admin: AdminHarness) -> None:
    refused = await admin.client.get("/api/admin/me", headers=tma(user_id=555))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "staff_not_linked"
    forged = await admin.client.get("/api/admin/me", headers=tma(user_id=90001, token="1:another-bot"))
    assert forged.status_code == 401
    assert await audit_actions(admin, "admin.denied") == 1
    # A deactivated staff member's Telegram is refused too.
    admin.staff["owner"].is_active = False
    await admin.db.commit()
    assert (await admin.client.get("/api/admin/me", headers=tma(user_id=90001))).status_code == 403
