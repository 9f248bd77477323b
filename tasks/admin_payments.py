"""Registers the payments export kind in the worker, so the Excel export job (tasks/admin_customers.py,
build_excel_export) can build the payments list too: a kind is known only where its module was imported."""

from __future__ import annotations

from app.admin.payments import exports  # noqa: F401
