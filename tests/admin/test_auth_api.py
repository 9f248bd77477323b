"""The staff JSON API's tokens: login → access + refresh; refresh rotates (the old refresh token stops working,
and using it again revokes everything); logout revokes everything; 401 without a token, 403 for a role without
the permission; tokens stored only as hashes; the OpenAPI document declares the bearer scheme."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from app.admin.auth import totp
from app.admin.auth.service import MAX_FAILURES
from app.models import ApiToken, AuditLog
from tests.admin.conftest import PASSWORD, AdminHarness


async def login(admin: AdminHarness, username: str, password: str = PASSWORD, **extra: str):
    return await admin.client.post("/api/auth/login", json={"username": username, "password": password, **extra})


def bearer(access: str) -> dict[str, str]:
    return {"authorization": f"Bearer {access}"}


async def test_login_refresh_logout(admin: AdminHarness) -> None:
    response = await login(admin, "admin_one")
    assert response.status_code == 200
    tokens = response.json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = await admin.client.get("/api/admin/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == "admin_one" and me.json()["role"] == "admin"

    # Only hashes are stored.
    await admin.db.rollback()
    stored = set(await admin.db.scalars(select(ApiToken.token_hash)))
    assert tokens["access_token"] not in stored
    assert hashlib.sha256(tokens["access_token"].encode()).hexdigest() in stored

    rotated = await admin.client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert (await admin.client.get("/api/admin/me", headers=bearer(fresh["access_token"]))).status_code == 200

    logout = await admin.client.post("/api/auth/logout", headers=bearer(fresh["access_token"]))
    assert logout.status_code == 204
    for access in (tokens["access_token"], fresh["access_token"]):
        assert (await admin.client.get("/api/admin/me", headers=bearer(access))).status_code == 401
    again = await admin.client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert again.status_code == 401


async def test_a_used_refresh_token_is_refused_and_revokes_the_family(admin: AdminHarness) -> None:
    tokens = (await login(admin, "support_one")).json()
    fresh = (await admin.client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
    replay = await admin.client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "refresh_token_invalid"
    # The thief's replay ended the legitimate pair as well: sign in again.
    assert (await admin.client.get("/api/admin/me", headers=bearer(fresh["access_token"]))).status_code == 401
    await admin.db.rollback()
    assert (
        await admin.db.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "admin.refresh_reused")
        )
        == 1
    )


async def test_bad_logins_are_refused_without_tokens(admin: AdminHarness) -> None:
    wrong = await login(admin, "admin_one", "wrong-password")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "sign_in_failed"
    unknown = await login(admin, "nobody", "wrong-password")
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "sign_in_failed"
    malformed = await admin.client.post("/api/auth/login", json={"username": "", "password": 5})
    assert malformed.status_code == 422
    assert (await admin.client.post("/api/auth/refresh", json={"refresh_token": "nope"})).status_code == 401
    assert (await admin.client.post("/api/auth/logout")).status_code == 401
    await admin.db.rollback()
    assert await admin.db.scalar(select(func.count()).select_from(ApiToken)) == 0


async def test_api_login_locks_like_the_page(admin: AdminHarness) -> None:
    for _ in range(MAX_FAILURES):
        assert (await login(admin, "marketing_one", "wrong-password")).status_code == 401
    locked = await login(admin, "marketing_one")
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "account_locked"
    assert int(locked.headers["retry-after"]) > 0


async def test_api_login_asks_for_the_totp_code_once_enrolled(admin: AdminHarness) -> None:
    secret = totp.new_secret()
    admin.staff["admin"].totp_secret = totp.encrypt_secret(secret)
    await admin.db.commit()
    missing = await login(admin, "admin_one")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "otp_required"
    ok = await login(admin, "admin_one", otp=totp.current_code(secret))
    assert ok.status_code == 200


async def test_401_without_a_token_and_403_without_the_permission(admin: AdminHarness) -> None:
    assert (await admin.client.get("/api/admin/me")).status_code == 401
    bad = await admin.client.get("/api/admin/me", headers=bearer("made-up"))
    assert bad.status_code == 401
    # A refresh token is not an access token.
    tokens = (await login(admin, "support_one")).json()
    assert (await admin.client.get("/api/admin/me", headers=bearer(tokens["refresh_token"]))).status_code == 401
    # support has no audit:read; the staff page needs staff:manage.
    denied = await admin.client.get(
        "/admin/staff", headers=bearer(tokens["access_token"]) | {"accept": "application/json"}
    )
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"


async def test_openapi_declares_the_bearer_scheme_and_the_docs_page_loads(admin: AdminHarness) -> None:
    schema = (await admin.client.get("/api/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    assert "/api/auth/login" in schema["paths"] and "/api/admin/me" in schema["paths"]
    assert schema["paths"]["/api/admin/me"]["get"]["security"]
    assert not any(path.startswith("/admin") for path in schema["paths"])  # pages stay out of the API docs
    docs = await admin.client.get("/api/docs")
    assert docs.status_code == 200 and "/static/api-docs.js" in docs.text
    assert 'data-url="/api/openapi.json"' in docs.text
    assert "cdn" not in docs.text  # nothing the Content-Security-Policy would block
    bundle = await admin.client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
