"""Every admin route, HTML and JSON, × every role → allowed or denied as the permission registry says. The routes
come from the app's route table, so a new route is covered the day it is added, and a route that declares no
permission (or two) fails here."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from app.admin.auth.dependencies import authenticated_staff, require
from app.admin.navigation import AdminRoute, admin_routes
from app.admin.routes import PUBLIC_PATHS
from app.config import Settings
from app.models import StaffRole
from app.staff.permissions import ROLE_PRESETS, effective_permissions
from tests.admin.conftest import ROLES, AdminHarness
from tests.conftest import make_settings
from tests.web import BOT_TOKEN

# An id no row has: an allowed call then ends in 404/422 instead of changing real data (e.g. deactivating the
# staff member who is making the calls).
MISSING_ID = "999999"


@pytest.fixture
def admin_settings(database_url: str) -> Settings:
    # The walk sends every route × every role from one address within a minute: more than the app-wide limit per
    # address (600), which would answer 429 instead of the permission's verdict.
    return make_settings(database_url, bot_token=BOT_TOKEN, rate_limit_per_ip_per_minute=100_000)


def permission_problems(routes: list[AdminRoute]) -> list[str]:
    problems = []
    for route in routes:
        if route.path in PUBLIC_PATHS:
            if route.permissions:
                problems.append(f"{route.path}: public sign-in route declares {route.permissions}")
            continue
        if not route.authenticated:
            problems.append(f"{sorted(route.methods)} {route.path}: not behind authenticated_staff")
        if len(route.permissions) != 1:
            problems.append(f"{sorted(route.methods)} {route.path}: declares {list(route.permissions)}, not one")
    return problems


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", MISSING_ID, path)


def test_every_admin_route_declares_exactly_one_permission(admin_app: FastAPI) -> None:
    routes = admin_routes(admin_app)
    assert len(routes) > len(PUBLIC_PATHS)
    assert permission_problems(routes) == []


def test_the_check_catches_a_route_without_a_permission() -> None:
    """The structural check itself must be able to fail."""
    app = FastAPI()
    router = APIRouter(prefix="/admin", dependencies=[Depends(authenticated_staff)])

    @router.get("/forgotten")
    async def forgotten() -> dict:
        return {}

    @router.get("/twice", dependencies=[require("users:read"), require("users:write")])
    async def twice() -> dict:
        return {}

    loose = APIRouter(prefix="/api/admin")

    @loose.get("/unguarded", dependencies=[require("users:read")])
    async def unguarded() -> dict:
        return {}

    app.include_router(router)
    app.include_router(loose)
    problems = permission_problems(admin_routes(app))
    assert len(problems) == 3
    assert any("/admin/forgotten" in p for p in problems)
    assert any("/admin/twice" in p for p in problems)
    assert any("/api/admin/unguarded: not behind" in p for p in problems)


async def call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if method in {"POST", "PUT", "PATCH"}:
        if path.startswith("/api/"):
            return await client.request(method, path, headers=headers, json={})
        return await client.request(method, path, headers=headers, data={})
    return await client.request(method, path, headers=headers)


async def test_every_route_answers_every_role_as_the_registry_says(admin: AdminHarness) -> None:
    routes = [r for r in admin_routes(admin.app) if r.path not in PUBLIC_PATHS]
    browsers = {role: await admin.browser(role) for role in ROLES}
    tokens = {role: await admin.bearer(role) for role in ROLES}
    mismatches = []
    checked = 0
    for route in routes:
        (permission,) = route.permissions
        path = concrete(route.path)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            for role in ROLES:
                allowed = permission in effective_permissions(StaffRole(role))
                if path.startswith("/api/"):
                    response = await call(admin.client, method, path, tokens[role])
                else:
                    response = await call(browsers[role], method, path, {"accept": "application/json"})
                checked += 1
                denied = response.status_code == 403 and "permission_denied" in response.text
                if allowed == denied or response.status_code in (401, 500):
                    mismatches.append(f"{role} {method} {path} ({permission}): {response.status_code}")
    assert checked >= len(routes) * len(ROLES)
    assert mismatches == []


async def test_every_route_refuses_the_anonymous(admin: AdminHarness) -> None:
    for route in admin_routes(admin.app):
        if route.path in PUBLIC_PATHS:
            continue
        path = concrete(route.path)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            response = await call(admin.client, method, path, {"accept": "application/json"})
            if method == "GET" and path.startswith("/admin"):
                # A first page load gets the shell, which signs in (initData) or goes to /admin/login.
                assert 'id="admin-shell"' in response.text, path
                assert "/admin/login?next=" in response.text, path
            else:
                assert response.status_code == 401, f"{method} {path}: {response.status_code}"


def test_presets_follow_admin_md() -> None:
    assert ROLE_PRESETS[StaffRole.OWNER] >= {"staff:manage", "settings:write", "money:refund"}
    assert "staff:manage" not in ROLE_PRESETS[StaffRole.ADMIN]
    assert "settings:write" not in ROLE_PRESETS[StaffRole.ADMIN]
    assert "money:refund" not in ROLE_PRESETS[StaffRole.SUPPORT]
    assert "users:write" not in ROLE_PRESETS[StaffRole.MARKETING]
    # Overrides: "support without money" and "read-only" are one grant / revoke away.
    read_only = effective_permissions(StaffRole.SUPPORT, {"revoke": ["users:write"]})
    assert "users:read" in read_only and "users:write" not in read_only
    assert "money:refund" in effective_permissions(StaffRole.SUPPORT, {"grant": ["money:refund"]})
    # Names that left the registry are ignored, and one's own account can never be revoked.
    assert (
        effective_permissions(StaffRole.MARKETING, {"grant": ["gone:away"], "revoke": ["account:self"]})
        == (ROLE_PRESETS[StaffRole.MARKETING])
    )
