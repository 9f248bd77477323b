"""The audit log page (/admin/audit)."""
