"""/admin/experiments and /api/admin/experiments: A/B experiments over app/experiments (issue 14)."""
