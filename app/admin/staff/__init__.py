"""Staff management for owners (/admin/staff)."""
