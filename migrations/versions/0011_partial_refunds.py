"""partial refunds (issue 12): each refund its own row, the refunded amount on the payment

A payment can be refunded in parts: `payment_refunds` holds every refund (staff request, provider id, amount,
outcome) and `payments.refunded_minor` their succeeded total. Payments refunded before this revision were refunded
whole: they get refunded_minor = amount_minor and one succeeded refund row dated at their refunded_at, so the
dashboard's revenue keeps subtracting them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 07:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CHECK = "ck_payments_refund_within_amount"
WITHIN_AMOUNT = "refunded_minor >= 0 AND refunded_minor <= amount_minor"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a CHECK only with its column (no ALTER TABLE … ADD CONSTRAINT); it needs no table rebuild.
        op.execute(
            "ALTER TABLE payments ADD COLUMN refunded_minor BIGINT DEFAULT '0' NOT NULL"
            f" CONSTRAINT {CHECK} CHECK ({WITHIN_AMOUNT})"
        )
    else:
        op.add_column("payments", sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False))
        op.create_check_constraint(op.f(CHECK), "payments", WITHIN_AMOUNT)
    op.create_table(
        "payment_refunds",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.Column("payment_id", BigId, nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "requested",
                "succeeded",
                "failed",
                name="refund_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("request_key", sa.String(length=64), nullable=True),
        sa.Column("provider_refund_id", sa.String(length=128), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("succeeded_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payment_refunds_positive_amount")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_refunds_payment_id_payments"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refunds")),
        sa.UniqueConstraint("public_id", name=op.f("uq_payment_refunds_public_id")),
        sa.UniqueConstraint(
            "payment_id", "provider_refund_id", name=op.f("uq_payment_refunds_payment_id_provider_refund_id")
        ),
        sa.UniqueConstraint("payment_id", "request_key", name=op.f("uq_payment_refunds_payment_id_request_key")),
    )
    op.create_index("ix_payment_refunds_payment_id", "payment_refunds", ["payment_id"], unique=False)
    op.create_index("ix_payment_refunds_succeeded_at", "payment_refunds", ["succeeded_at"], unique=False)
    _backfill_whole_refunds()


def _backfill_whole_refunds() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # A fresh id per row in SQL (the table may hold many): PostgreSQL 13+ has gen_random_uuid().
    new_id = "lower(hex(randomblob(16)))" if sqlite else "gen_random_uuid()::text"
    op.execute("UPDATE payments SET refunded_minor = amount_minor WHERE status = 'refunded'")
    op.execute(
        "INSERT INTO payment_refunds"
        " (public_id, payment_id, amount_minor, currency, status, requested_by, succeeded_at, created_at)"
        f" SELECT {new_id}, id, amount_minor, currency, 'succeeded', 'migration',"
        " COALESCE(refunded_at, created_at), COALESCE(refunded_at, created_at)"
        " FROM payments WHERE status = 'refunded'"
    )


def downgrade() -> None:
    op.drop_index("ix_payment_refunds_succeeded_at", table_name="payment_refunds")
    op.drop_index("ix_payment_refunds_payment_id", table_name="payment_refunds")
    op.drop_table("payment_refunds")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(CHECK), "payments", type_="check")
    op.drop_column("payments", "refunded_minor")
