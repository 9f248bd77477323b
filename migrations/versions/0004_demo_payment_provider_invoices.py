"""demo payment provider invoices

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 11:03:02.692736
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "demo_invoices",
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("return_url", sa.String(length=1024), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "paid",
                "failed",
                "cancelled",
                "refunded",
                name="demo_invoice_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("card_token", sa.String(length=64), nullable=True),
        sa.Column("save_card", sa.Boolean(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("expires_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("updated_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_invoices")),
        sa.UniqueConstraint("external_id", name=op.f("uq_demo_invoices_external_id")),
    )
    with op.batch_alter_table("demo_invoices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_demo_invoices_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("demo_invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_demo_invoices_order_id"))

    op.drop_table("demo_invoices")
