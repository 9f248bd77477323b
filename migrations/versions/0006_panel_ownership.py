"""panel ownership, traffic strategies, squads per plan (issue 11)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 03:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STRATEGIES = ("no_reset", "month")


def _strategy_column() -> sa.Column:
    # Its CHECK is added once the column exists (SQLite's batch copy cannot add both in one step).
    return sa.Column("traffic_strategy", sa.String(length=32), nullable=False, server_default="no_reset")


def upgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(_strategy_column())
        batch_op.add_column(
            sa.Column(
                "panel_squads",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    with op.batch_alter_table("vpn_accounts", schema=None) as batch_op:
        batch_op.add_column(_strategy_column())
        batch_op.add_column(sa.Column("owner_key", sa.String(length=32), nullable=False, server_default=""))
    # Accounts made before ownership marks: their panel accounts carry none, so they are recognised once by the
    # customer's Telegram id (see app.panels.ownership), and the mark is written then.
    postgres = op.get_bind().dialect.name == "postgresql"
    random_hex = "md5(random()::text || id::text)" if postgres else "hex(randomblob(8))"
    op.execute(f"UPDATE vpn_accounts SET owner_key = 'legacy-' || lower(substr({random_hex}, 1, 16))")
    for table in ("plans", "vpn_accounts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            # The defaults only filled existing rows; the models supply the values from now on.
            batch_op.alter_column("traffic_strategy", server_default=None)
            batch_op.create_check_constraint("traffic_strategy", sa.column("traffic_strategy").in_(STRATEGIES))
            if table == "vpn_accounts":
                batch_op.alter_column("owner_key", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("vpn_accounts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_vpn_accounts_traffic_strategy"), type_="check")
        batch_op.drop_column("owner_key")
        batch_op.drop_column("traffic_strategy")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_plans_traffic_strategy"), type_="check")
        batch_op.drop_column("panel_squads")
        batch_op.drop_column("traffic_strategy")
