"""The permission registry (ADMIN.md): `section:action` strings, the role presets over them, and a staff
member's overrides. Every admin route declares exactly one of these with `require(...)`
(app/admin/auth/dependencies.py); tests/admin/test_permission_matrix.py checks every route against every role."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.models import Staff, StaffRole

# name -> what it allows (shown to owners when they edit a staff member's overrides).
PERMISSIONS: dict[str, str] = {
    "account:self": "Own account: password, two-factor, own sessions",
    "dashboard:read": "Dashboard",
    "users:read": "See customers and their subscriptions",
    "users:write": "Change customers and their subscriptions",
    "payments:read": "See payments",
    "money:refund": "Refund payments",
    "finance:read": "Revenue and finance figures",
    "servers:write": "Manage servers and panels",
    "servers:connect": "Add a panel server, change its address or sign-in (credentials)",
    "settings:write": "Settings, credentials and payment providers",
    "texts:write": "Edit texts and the FAQ",
    "promo:write": "Promo codes",
    "broadcasts:send": "Send broadcasts",
    "experiments:write": "A/B experiments",
    "staff:manage": "Staff accounts and their permissions",
    "audit:read": "The audit log",
    "export": "Export customers and payments",
    "system:manage": "System: job runs, outbox (retry), webhooks received, backups (make one now)",
    "backups:download": "Download database backups (they hold every customer's data)",
}

# Every signed-in staff member may manage their own account; an override cannot take that away.
ALWAYS_GRANTED = frozenset({"account:self"})

_EVERYTHING = frozenset(PERMISSIONS)
ROLE_PRESETS: dict[StaffRole, frozenset[str]] = {
    StaffRole.OWNER: _EVERYTHING,
    # Credentials, provider settings and other staff stay with owners (ADMIN.md).
    StaffRole.ADMIN: _EVERYTHING - {"settings:write", "servers:connect", "staff:manage", "backups:download"},
    StaffRole.SUPPORT: frozenset({"account:self", "dashboard:read", "users:read", "users:write", "payments:read"}),
    StaffRole.MARKETING: frozenset(
        {
            "account:self",
            "dashboard:read",
            "users:read",
            "finance:read",
            "texts:write",
            "promo:write",
            "broadcasts:send",
            "experiments:write",
            "export",
        }
    ),
}


class UnknownPermission(ValueError):
    """A permission name that is not in the registry."""


def check_known(names: Iterable[str]) -> list[str]:
    """The names, sorted and de-duplicated; raises UnknownPermission naming the first unknown one."""
    unique = sorted(set(names))
    for name in unique:
        if name not in PERMISSIONS:
            raise UnknownPermission(f"unknown permission {name!r}")
    return unique


def normalise_overrides(grant: Iterable[str], revoke: Iterable[str]) -> dict[str, list[str]] | None:
    """Validated overrides as stored in Staff.permission_overrides (None when there are none)."""
    granted, revoked = check_known(grant), check_known(revoke)
    if both := set(granted) & set(revoked):
        raise UnknownPermission(f"granted and revoked at once: {', '.join(sorted(both))}")
    if locked := set(revoked) & ALWAYS_GRANTED:
        raise UnknownPermission(f"cannot be revoked: {', '.join(sorted(locked))}")
    return {"grant": granted, "revoke": revoked} if granted or revoked else None


def _listed(overrides: Mapping[str, Any] | None, key: str) -> set[str]:
    # Names dropped from the registry since they were stored are ignored rather than failing every request.
    values = (overrides or {}).get(key) or []
    return {name for name in values if name in PERMISSIONS}


def effective_permissions(role: StaffRole, overrides: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The role's preset, plus granted, minus revoked; `account:self` always."""
    preset = ROLE_PRESETS[role]
    return frozenset((preset | _listed(overrides, "grant")) - _listed(overrides, "revoke")) | ALWAYS_GRANTED


def permissions_of(staff: Staff) -> frozenset[str]:
    return effective_permissions(staff.role, staff.permission_overrides)
