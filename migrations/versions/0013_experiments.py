"""A/B experiments: what an experiment changes and how conversions are counted (issue 14)

The kind (a plan's price or a text), its target (the plan's code or the text's key), the conversion window in
days and when it started. Experiments existed as a table since 0001 but nothing wrote them, so the new NOT NULL
columns take defaults only to satisfy ALTER TABLE on a non-empty table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

KINDS = ("price", "text")


def upgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        # The kind's CHECK is added once the column exists (SQLite's batch copy cannot add both in one step).
        batch_op.add_column(sa.Column("kind", sa.String(length=32), nullable=False, server_default="price"))
        batch_op.add_column(sa.Column("target", sa.String(length=128), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("conversion_days", sa.Integer(), nullable=False, server_default="14"))
        batch_op.add_column(sa.Column("started_at", app.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_experiments_kind_target", ["kind", "target"], unique=False)
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        # The defaults only filled existing rows; the model supplies the values from now on.
        batch_op.alter_column("kind", server_default=None)
        batch_op.alter_column("target", server_default=None)
        batch_op.alter_column("conversion_days", server_default=None)
        batch_op.create_check_constraint("experiment_kind", sa.column("kind").in_(KINDS))


def downgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_experiments_experiment_kind"), type_="check")
        batch_op.drop_index("ix_experiments_kind_target")
        batch_op.drop_column("started_at")
        batch_op.drop_column("conversion_days")
        batch_op.drop_column("target")
        batch_op.drop_column("kind")
