"""Staff management for owners: create with inline errors, role and overrides (effective at once), deactivation
revoking every session and API token, reset 2FA, unlock, Telegram link; guards against locking the shop out;
every change audited before/after."""

from __future__ import annotations

from sqlalchemy import func, select

from app.admin.auth import totp
from app.models import ApiToken, AuditLog, Staff, StaffRole, StaffSession
from tests.admin.conftest import AdminHarness
from tests.web import htmx, text_of


async def english(admin: AdminHarness, role: str):
    """A signed-in browser that prefers English (the toasts are asserted in English)."""
    client = await admin.browser(role)
    client.headers["accept-language"] = "en"
    return client


async def fresh(admin: AdminHarness) -> None:
    """See what the app committed: end the test session's transaction and forget the rows it holds (a
    rollback without a transaction expires nothing)."""
    await admin.db.rollback()
    admin.db.expire_all()


async def audit_rows(admin: AdminHarness, action: str) -> list[AuditLog]:
    await fresh(admin)
    return list(await admin.db.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


async def test_the_owner_sees_staff_and_creates_one(admin: AdminHarness) -> None:
    owner = await english(admin, "owner")
    owner_id = admin.staff["owner"].id
    page = await owner.get("/admin/staff")
    assert page.status_code == 200
    for role in ("owner_one", "admin_one", "support_one", "marketing_one"):
        assert role in page.text
    created = await owner.post(
        "/admin/staff",
        data={"username": "dasha", "password": "a-long-password", "role": "support", "telegram_id": "777001"},
        headers=htmx(),
    )
    assert created.status_code == 200
    assert "dasha: created" in created.text  # the toast
    await fresh(admin)
    dasha = await admin.db.scalar(select(Staff).where(Staff.username == "dasha"))
    assert dasha is not None and dasha.role == StaffRole.SUPPORT and dasha.telegram_id == 777001
    (row,) = await audit_rows(admin, "staff.create")
    assert row.actor_type == "staff" and row.actor_id == str(owner_id)
    assert row.after == {"username": "dasha", "role": "support", "telegram_id": 777001}
    assert row.user_agent is not None


async def test_bad_new_staff_is_refused_inline_and_nothing_is_created(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    cases = [
        ({"username": "x", "password": "a-long-password", "role": "support"}, "username"),
        ({"username": "dasha", "password": "short", "role": "support"}, "password"),
        ({"username": "dasha", "password": "a-long-password", "role": "emperor"}, "role"),
        ({"username": "owner_one", "password": "a-long-password", "role": "support"}, "already exists"),
        ({"username": "dasha", "password": "a-long-password", "role": "support", "telegram_id": "90001"}, "linked"),
        ({"username": "dasha", "password": "a-long-password", "role": "support", "telegram_id": "abc"}, "telegram_id"),
    ]
    for data, expected in cases:
        response = await owner.post("/admin/staff", data=data, headers=htmx())
        assert response.status_code == 422, data
        assert 'class="field-error"' in response.text or 'class="form-error"' in response.text, data
        assert expected in response.text, (data, text_of(response.text)[:400])
        assert "a-long-password" not in response.text  # the password is never echoed
    await fresh(admin)
    assert await admin.db.scalar(select(func.count()).select_from(Staff)) == 4
    assert await audit_rows(admin, "staff.create") == []


async def test_deactivation_revokes_sessions_and_tokens_at_once(admin: AdminHarness) -> None:
    owner = await english(admin, "owner")
    support = await admin.browser("support")
    token = await admin.bearer("support")
    assert (await support.get("/api/admin/me")).status_code == 200
    assert (await admin.client.get("/api/admin/me", headers=token)).status_code == 200

    target = admin.staff["support"].id
    response = await owner.post(f"/admin/staff/{target}/deactivate", headers=htmx())
    assert response.status_code == 200 and "every session and token revoked" in response.text

    assert (await support.get("/api/admin/me")).status_code == 401
    assert (await admin.client.get("/api/admin/me", headers=token)).status_code == 401
    await fresh(admin)
    live_sessions = (
        select(func.count())
        .select_from(StaffSession)
        .where(StaffSession.staff_id == target, StaffSession.revoked_at.is_(None))
    )
    live_tokens = (
        select(func.count()).select_from(ApiToken).where(ApiToken.staff_id == target, ApiToken.revoked_at.is_(None))
    )
    assert await admin.db.scalar(live_sessions) == 0 and await admin.db.scalar(live_tokens) == 0
    (row,) = await audit_rows(admin, "staff.deactivated")
    assert row.before["is_active"] is True and row.after["is_active"] is False
    assert row.before["revoked_credentials"] == 3  # one session and an access + refresh token

    back = await owner.post(f"/admin/staff/{target}/activate", headers=htmx())
    assert back.status_code == 200
    await fresh(admin)
    assert (await admin.db.get(Staff, target)).is_active


async def test_the_shop_cannot_lose_its_last_owner_or_lock_out_the_actor(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    me = admin.staff["owner"].id
    refused = await owner.post(f"/admin/staff/{me}/deactivate", headers=htmx())
    assert refused.status_code == 422 and "your own account" in refused.text
    demote = await owner.post(f"/admin/staff/{me}/role", data={"role": "support"}, headers=htmx())
    assert demote.status_code == 422
    revoke_own = await owner.post(
        f"/admin/staff/{me}/permissions", data={"perm:staff:manage": "revoke"}, headers=htmx()
    )
    assert revoke_own.status_code == 422
    # A second owner may not demote the only other... make one, then the first can be demoted by them.
    second = await admin.add_staff("owner_two", "owner")
    second_id = second.id
    other = await admin.browser("owner", staff=second)
    assert (await other.post(f"/admin/staff/{me}/role", data={"role": "admin"}, headers=htmx())).status_code == 200
    # Now owner_two is the last owner: nobody can deactivate them (they cannot do it themselves either).
    assert (await other.post(f"/admin/staff/{second_id}/deactivate", headers=htmx())).status_code == 422
    await fresh(admin)
    assert (await admin.db.get(Staff, second_id)).is_active
    assert len(await audit_rows(admin, "staff.role_changed")) == 1


async def test_overrides_take_effect_on_the_next_request(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    support = await admin.browser("support")
    target = admin.staff["support"].id
    assert (await support.get("/admin/staff", headers={"accept": "application/json"})).status_code == 403
    saved = await owner.post(
        f"/admin/staff/{target}/permissions",
        data={"perm:staff:manage": "grant", "perm:users:write": "revoke", "perm:audit:read": ""},
        headers=htmx(),
    )
    assert saved.status_code == 200
    assert (await support.get("/admin/staff")).status_code == 200
    me = (await support.get("/api/admin/me")).json()
    assert "staff:manage" in me["permissions"] and "users:write" not in me["permissions"]
    (row,) = await audit_rows(admin, "staff.permissions_changed")
    assert row.before["permission_overrides"] is None
    assert row.after["permission_overrides"] == {"grant": ["staff:manage"], "revoke": ["users:write"]}

    bad = await owner.post(f"/admin/staff/{target}/permissions", data={"perm:nope:never": "grant"}, headers=htmx())
    assert bad.status_code == 422 and "unknown permission" in bad.text
    odd = await owner.post(f"/admin/staff/{target}/permissions", data={"perm:users:read": "maybe"}, headers=htmx())
    assert odd.status_code == 422
    await fresh(admin)
    assert (await admin.db.get(Staff, target)).permission_overrides == {
        "grant": ["staff:manage"],
        "revoke": ["users:write"],
    }


async def test_reset_2fa_unlock_and_telegram_link(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    member = admin.staff["admin"]
    member_id = member.id
    member.totp_secret = totp.encrypt_secret(totp.new_secret())
    member.failed_logins = 3
    await admin.db.commit()
    assert (await owner.post(f"/admin/staff/{member.id}/reset-2fa", headers=htmx())).status_code == 200
    assert (await owner.post(f"/admin/staff/{member.id}/unlock", headers=htmx())).status_code == 200
    linked = await owner.post(f"/admin/staff/{member.id}/telegram", data={"telegram_id": "90002"}, headers=htmx())
    assert linked.status_code == 200
    taken = await owner.post(f"/admin/staff/{member.id}/telegram", data={"telegram_id": "90001"}, headers=htmx())
    assert taken.status_code == 422 and "another staff account" in taken.text
    await fresh(admin)
    member = await admin.db.get(Staff, member_id)
    assert member.totp_secret is None and member.failed_logins == 0 and member.telegram_id == 90002
    for action in ("staff.2fa_reset", "staff.unlocked", "staff.telegram_linked"):
        assert len(await audit_rows(admin, action)) == 1, action
    (reset,) = await audit_rows(admin, "staff.2fa_reset")
    assert reset.before["two_factor"] is True and reset.after["two_factor"] is False


async def test_an_owner_ends_someone_elses_session(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    marketing = await admin.browser("marketing")
    target = admin.staff["marketing"].id
    page = await owner.get(f"/admin/staff/{target}")
    assert "pytest" in page.text  # the session's user agent
    await fresh(admin)
    session_id = await admin.db.scalar(select(StaffSession.id).where(StaffSession.staff_id == target))
    ended = await owner.post(f"/admin/staff/{target}/sessions/{session_id}/revoke", headers=htmx())
    assert ended.status_code == 200
    assert (await marketing.get("/api/admin/me")).status_code == 401
    again = await owner.post(f"/admin/staff/{target}/sessions/{session_id}/revoke", headers=htmx())
    assert again.status_code == 404
