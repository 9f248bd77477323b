"""The admin JSON API for customers and subscriptions: the table's filters and cursor, reads, changes through
the domain's staff actions (audited), 401 without a token, 403 for a role without the permission, and bad input
refused with nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.kit.clock import utcnow
from app.models import AuditLog, Plan, Subscription, SubscriptionStatus, User
from tests.admin.conftest import AdminHarness
from tests.factories import add_account, add_server, add_subscriber


async def _customers(admin: AdminHarness, count: int = 5) -> list[tuple[User, Subscription]]:
    server = await add_server(admin.db)
    made = []
    for i in range(count):
        user, sub = await add_subscriber(admin.db, 7000 + i, ends_in=timedelta(days=i + 1))
        user.first_name = f"Client{i}"
        await add_account(admin.db, server, sub)
        made.append((user, sub))
    await admin.db.commit()
    return made


CHANGES = (AuditLog.actor_type == "staff", AuditLog.action != "admin.denied")


async def _audit_count(admin: AdminHarness) -> int:
    """Staff changes recorded (refused attempts are audited too, as admin.denied: not counted here)."""
    return int(await admin.db.scalar(select(func.count(AuditLog.id)).where(*CHANGES)) or 0)


async def test_list_pages_by_cursor_with_filters_and_search(admin: AdminHarness) -> None:
    made = await _customers(admin)
    headers = await admin.bearer("support")
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 2, "sort": "ends", "dir": "asc"} | ({"cursor": cursor} if cursor else {})
        response = await admin.client.get("/api/admin/users", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["telegram_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [user.telegram_id for user, _ in made]
    found = await admin.client.get("/api/admin/users", params={"search": "7003"}, headers=headers)
    (item,) = found.json()["items"]
    assert (item["first_name"], item["status"], item["subscription"]["id"]) == ("Client3", "active", made[3][1].id)

    for bad in ({"sort": "password"}, {"status": "rich"}, {"limit": 0}, {"created_from": "soon"}):
        refused = await admin.client.get("/api/admin/users", params=bad, headers=headers)
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["code"] == "validation_failed"
    damaged = await admin.client.get("/api/admin/users", params={"cursor": "zz"}, headers=headers)
    assert damaged.status_code == 422


async def test_no_token_401_and_role_without_permission_403(admin: AdminHarness) -> None:
    (user, sub), *_ = await _customers(admin, 1)
    assert (await admin.client.get("/api/admin/users")).status_code == 401
    assert (await admin.client.get(f"/api/admin/users/{user.id}")).status_code == 401
    marketing = await admin.bearer("marketing")  # may read customers, not change them
    assert (await admin.client.get(f"/api/admin/users/{user.id}", headers=marketing)).status_code == 200
    for method, path, body in (
        ("post", f"/api/admin/users/{user.id}/block", {"reason": "spam"}),
        ("put", f"/api/admin/users/{user.id}", {"language": "en"}),
        ("post", f"/api/admin/subscriptions/{sub.id}/cancel", None),
        ("put", f"/api/admin/subscriptions/{sub.id}", {"extend_days": 3}),
    ):
        response = await admin.client.request(method, path, json=body, headers=marketing)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "permission_denied"
    await admin.db.refresh(user)
    await admin.db.refresh(sub)
    assert not user.is_blocked and sub.status == SubscriptionStatus.ACTIVE
    assert await _audit_count(admin) == 0


async def test_block_unblock_and_update(admin: AdminHarness) -> None:
    (user, _), *_ = await _customers(admin, 1)
    headers = await admin.bearer("support")
    refused = await admin.client.post(f"/api/admin/users/{user.id}/block", json={"reason": "  "}, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_reason"
    missing = await admin.client.post(f"/api/admin/users/{user.id}/block", json={}, headers=headers)
    assert missing.status_code == 422
    assert await _audit_count(admin) == 0

    blocked = await admin.client.post(f"/api/admin/users/{user.id}/block", json={"reason": "fraud"}, headers=headers)
    assert blocked.status_code == 200 and blocked.json()["is_blocked"] is True
    twice = await admin.client.post(f"/api/admin/users/{user.id}/block", json={"reason": "again"}, headers=headers)
    assert twice.status_code == 409
    unblocked = await admin.client.post(f"/api/admin/users/{user.id}/unblock", headers=headers)
    assert unblocked.status_code == 200 and unblocked.json()["is_blocked"] is False

    for bad in ({"language": "xx"}, {"timezone": "Nowhere/City"}, {"telegram_id": 5}, {"language": None}):
        response = await admin.client.put(f"/api/admin/users/{user.id}", json=bad, headers=headers)
        assert response.status_code == 422, bad
    updated = await admin.client.put(
        f"/api/admin/users/{user.id}", json={"language": "en", "timezone": "Asia/Jakarta"}, headers=headers
    )
    assert updated.status_code == 200
    assert (updated.json()["language"], updated.json()["timezone"]) == ("en", "Asia/Jakarta")
    rows = (await admin.db.scalars(select(AuditLog).where(*CHANGES).order_by(AuditLog.id))).all()
    assert [row.action for row in rows] == ["user.block", "user.unblock", "user.update"]
    assert rows[0].actor_id == str(admin.staff["support"].id)
    assert rows[2].before == {"language": "ru", "timezone": None}
    assert (await admin.client.get("/api/admin/users/999999", headers=headers)).status_code == 404


async def test_subscriptions_list_read_update_and_cancel(admin: AdminHarness) -> None:
    made = await _customers(admin, 3)
    plan = Plan(code="year", name={"en": "Year"}, duration_days=365, device_limit=3)
    admin.db.add(plan)
    await admin.db.commit()
    headers = await admin.bearer("admin")
    listing = await admin.client.get("/api/admin/subscriptions", params={"limit": 2}, headers=headers)
    body = listing.json()
    assert [item["id"] for item in body["items"]] == [made[2][1].id, made[1][1].id]
    rest = await admin.client.get(
        "/api/admin/subscriptions", params={"limit": 2, "cursor": body["next_cursor"]}, headers=headers
    )
    assert [item["id"] for item in rest.json()["items"]] == [made[0][1].id] and rest.json()["next_cursor"] is None
    by_user = await admin.client.get("/api/admin/subscriptions", params={"user_id": made[1][0].id}, headers=headers)
    assert [item["id"] for item in by_user.json()["items"]] == [made[1][1].id]

    sub = made[0][1]
    ends = sub.ends_at
    for bad in (
        {"extend_days": 0},
        {"extend_days": 5, "ends_at": "2030-01-01T00:00:00Z"},
        {"plan_id": 424242},
        {"ends_at": "2000-01-01T00:00:00Z"},  # before the start
        {},
        {"status": "active"},
    ):
        response = await admin.client.put(f"/api/admin/subscriptions/{sub.id}", json=bad, headers=headers)
        assert response.status_code == 422, bad
    # One refused change of several: none applied.
    mixed = await admin.client.put(
        f"/api/admin/subscriptions/{sub.id}", json={"extend_days": 5, "plan_id": 424242}, headers=headers
    )
    assert mixed.status_code == 422
    await admin.db.refresh(sub)
    assert sub.ends_at == ends and await _audit_count(admin) == 0

    changed = await admin.client.put(
        f"/api/admin/subscriptions/{sub.id}", json={"extend_days": 7, "plan_id": plan.id}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert datetime.fromisoformat(changed.json()["ends_at"]) == ends + timedelta(days=7)
    assert changed.json()["plan_code"] == "year"
    target = (utcnow() + timedelta(days=90)).replace(microsecond=0, tzinfo=UTC)
    dated = await admin.client.put(
        f"/api/admin/subscriptions/{sub.id}", json={"ends_at": target.isoformat()}, headers=headers
    )
    assert datetime.fromisoformat(dated.json()["ends_at"]) == target

    cancelled = await admin.client.post(f"/api/admin/subscriptions/{sub.id}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await admin.client.post(f"/api/admin/subscriptions/{sub.id}/cancel", headers=headers)
    assert again.status_code == 409
    got = await admin.client.get(f"/api/admin/subscriptions/{sub.id}", headers=headers)
    assert got.json()["status"] == "cancelled" and got.json()["auto_renew"] is False
    actions = (await admin.db.scalars(select(AuditLog.action).where(*CHANGES))).all()
    assert sorted(actions) == sorted(
        ["subscription.extend", "subscription.change_plan", "subscription.set_end", "subscription.cancel"]
    )


async def test_out_of_range_and_unstorable_input_is_refused_not_a_server_error(admin: AdminHarness) -> None:
    """What a fuzzer sends (ids past BIGINT, NUL characters, forged cursors) is a 4xx, never a 5xx."""
    (user, sub), *_ = await _customers(admin, 1)
    headers = await admin.bearer("owner")
    huge = 2**63
    for path in (f"/api/admin/users/{huge}", f"/api/admin/subscriptions/{huge}", "/api/admin/users/0"):
        assert (await admin.client.get(path, headers=headers)).status_code == 422, path
    for params in (
        {"plan": huge},
        {"search": "a\x00b"},
        {"language": "'; drop"},
        {"cursor": "W1sxLDJdLDVd"},  # [[1,2],5]: a cursor of the right shape holding the wrong value
    ):
        response = await admin.client.get("/api/admin/users", params=params, headers=headers)
        assert response.status_code == 422, params
    for params in ({"user_id": huge}, {"cursor": "9" * 30}):
        response = await admin.client.get("/api/admin/subscriptions", params=params, headers=headers)
        assert response.status_code == 422, params
    plan = await admin.client.put(f"/api/admin/subscriptions/{sub.id}", json={"plan_id": huge}, headers=headers)
    assert plan.status_code == 422
    nul = await admin.client.post(f"/api/admin/users/{user.id}/block", json={"reason": "a\x00b"}, headers=headers)
    assert nul.status_code == 422
    await admin.db.refresh(user)
    assert not user.is_blocked and await _audit_count(admin) == 0
