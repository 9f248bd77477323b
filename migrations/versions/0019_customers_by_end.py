"""the customers table sorted by end date walks users.current_ends_at

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 12:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_current_ends_at", "users", ["current_ends_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_users_current_ends_at", table_name="users")
