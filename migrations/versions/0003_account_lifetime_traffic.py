"""vpn_accounts.lifetime_traffic_bytes: the base for daily usage deltas

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vpn_accounts") as batch_op:
        batch_op.add_column(sa.Column("lifetime_traffic_bytes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("vpn_accounts") as batch_op:
        batch_op.drop_column("lifetime_traffic_bytes")
