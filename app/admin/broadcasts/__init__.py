"""/admin/broadcasts and /api/admin/broadcast: the pages and JSON over app/broadcasts (issue 14)."""
