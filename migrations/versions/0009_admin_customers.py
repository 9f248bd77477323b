"""admin section: customers, bulk actions, exports (issue 12)

Bulk actions keep the dry run's exact list of customers, progress and a report; Excel exports keep their file
until downloaded; the customers search finds panel usernames and payments' external ids by index, and
the table sorted by end date walks an index of subscriptions' end dates.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = app.models.base.UTCDateTime(timezone=True)
STATES = ("previewed", "queued", "running", "done", "failed")
NOT_PENDING = "status <> 'pending'"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _state(name: str) -> sa.Enum:
    return sa.Enum(*STATES, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        "bulk_runs",
        sa.Column("staff_id", BIG_ID, nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("source", _json(), nullable=False),
        sa.Column("user_ids", _json(), nullable=False),
        sa.Column("preview", _json(), nullable=False),
        sa.Column("state", _state("admin_job_state"), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("report", _json(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_bulk_runs_staff_id_staff"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_runs")),
    )
    with op.batch_alter_table("bulk_runs", schema=None) as batch_op:
        batch_op.create_index("ix_bulk_runs_staff_created", ["staff_id", "created_at"], unique=False)

    op.create_table(
        "export_files",
        sa.Column("staff_id", BIG_ID, nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("state", _state("export_state"), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=128), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_export_files_staff_id_staff"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_files")),
    )
    with op.batch_alter_table("export_files", schema=None) as batch_op:
        batch_op.create_index("ix_export_files_staff_created", ["staff_id", "created_at"], unique=False)

    with op.batch_alter_table("vpn_accounts", schema=None) as batch_op:
        batch_op.create_index("ix_vpn_accounts_panel_username", ["panel_username"], unique=False)
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_external_id", ["external_id"], unique=False)
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_subscriptions_ends_at", ["ends_at"], unique=False)
        batch_op.create_index(
            "ix_subscriptions_user_current",
            ["user_id", "ends_at", "id"],
            unique=False,
            postgresql_where=sa.text(NOT_PENDING),
            sqlite_where=sa.text(NOT_PENDING),
        )


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_user_current")
        batch_op.drop_index("ix_subscriptions_ends_at")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_external_id")
    with op.batch_alter_table("vpn_accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_vpn_accounts_panel_username")
    with op.batch_alter_table("export_files", schema=None) as batch_op:
        batch_op.drop_index("ix_export_files_staff_created")
    op.drop_table("export_files")
    with op.batch_alter_table("bulk_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_runs_staff_created")
    op.drop_table("bulk_runs")
