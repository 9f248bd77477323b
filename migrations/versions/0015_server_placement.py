"""servers.accepts_new_accounts: placement on or off, apart from whether the server is in use at all

`is_enabled` keeps its meaning (the health and sync jobs look after the server); a server that takes no new
accounts (turned off by staff, or being drained) still has its customers synced until they are moved.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers") as batch_op:
        batch_op.add_column(sa.Column("accepts_new_accounts", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch_op:
        batch_op.drop_column("accepts_new_accounts")
