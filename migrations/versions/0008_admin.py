"""admin section: staff sign-in, permissions, activity (issue 12)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 03:45:00
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
