"""the customers table: sorted by end date it walks users.current_ends_at; blocked customers have their own index;
the search box finds an @username by lower(username) (PostgreSQL)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


BLOCKED = sa.text("is_blocked IS true")


def upgrade() -> None:
    op.create_index("ix_users_current_ends_at", "users", ["current_ends_at", "id"], unique=False)
    op.create_index(
        "ix_users_blocked_created_at",
        "users",
        ["created_at", "id"],
        unique=False,
        postgresql_where=BLOCKED,
        sqlite_where=BLOCKED,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_users_username_lower", "users", [sa.text("lower(username)")], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_users_username_lower", table_name="users")
    op.drop_index("ix_users_blocked_created_at", table_name="users")
    op.drop_index("ix_users_current_ends_at", table_name="users")
