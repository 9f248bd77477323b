"""The admin's sections in ADMIN.md's order. A section is linked when its page exists in this build and the
viewer holds the permission that page declares (read from the route table, so the link and the page can never
disagree about who may see it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts


@dataclass(frozen=True, slots=True)
class Section:
    key: str  # i18n key admin.nav.<key>, and the name pages pass as `section` to highlight it
    href: str
    icon: str  # one character, shown in the compact phone nav


SECTIONS: tuple[Section, ...] = (
    Section("dashboard", "/admin", "◎"),
    Section("users", "/admin/users", "☺"),
    Section("payments", "/admin/payments", "₽"),
    Section("finance", "/admin/finance", "∑"),
    Section("servers", "/admin/servers", "⛁"),
    Section("plans", "/admin/plans", "☰"),
    Section("promo", "/admin/promo", "%"),
    Section("referrals", "/admin/referrals", "⇄"),
    Section("broadcasts", "/admin/broadcasts", "✉"),
    Section("texts", "/admin/texts", "¶"),
    Section("faq", "/admin/faq", "?"),
    Section("experiments", "/admin/experiments", "⚗"),
    Section("providers", "/admin/providers", "¤"),
    Section("settings", "/admin/settings", "⚙"),
    Section("system", "/admin/system", "⚠"),
    Section("audit", "/admin/audit", "☷"),
    Section("staff", "/admin/staff", "♟"),
)


@dataclass(frozen=True, slots=True)
class AdminRoute:
    path: str
    methods: frozenset[str]
    permissions: tuple[str, ...]  # every require(...) in the route's dependency tree: exactly one is right
    authenticated: bool  # authenticated_staff is a direct (router-level) dependency


def _declared(dependant: Any) -> tuple[list[str], bool]:
    permissions: list[str] = []
    stack = [dependant]
    while stack:
        node = stack.pop()
        if (name := getattr(node.call, "permission", None)) is not None:
            permissions.append(name)
        stack.extend(node.dependencies)
    # Router level: a direct dependency of the route, not only one reached through require(...).
    authenticated = any(getattr(d.call, "__name__", "") == "authenticated_staff" for d in dependant.dependencies)
    return permissions, authenticated


def admin_routes(app: FastAPI) -> list[AdminRoute]:
    """Every route under /admin and /api/admin as the app really serves it (router-level dependencies
    included), with the permissions it declares. The sidebar and the permission-matrix test both read this."""
    found: list[AdminRoute] = []
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        if not isinstance(context.original_route, APIRoute) or not path.startswith(("/admin", "/api/admin")):
            continue
        permissions, authenticated = _declared(context.dependant)
        found.append(AdminRoute(path, frozenset(context.methods or ()), tuple(permissions), authenticated))
    return found


def page_permissions(app: FastAPI) -> dict[str, str]:
    """Path → the permission of each GET page of the admin (computed once per app)."""
    cached = getattr(app.state, "admin_page_permissions", None)
    if cached is None:
        cached = {
            route.path: route.permissions[0]
            for route in admin_routes(app)
            if "GET" in route.methods and route.path.startswith("/admin") and len(route.permissions) == 1
        }
        app.state.admin_page_permissions = cached
    return cached


def visible_sections(request: Request) -> list[dict[str, Any]]:
    viewer = getattr(request.state, "staff_viewer", None)
    if viewer is None:
        return []
    pages = page_permissions(request.app)
    return [
        {"key": s.key, "href": s.href, "icon": s.icon}
        for s in SECTIONS
        if s.href in pages and viewer.can(pages[s.href])
    ]
