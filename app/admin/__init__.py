"""The staff area (issue 12, SPEC §10): pages under /admin, the JSON API under /api/admin, one sub-package per
section. Pages and view models only — the business rules live in the domain packages."""
