"""admin part 1, finished (issue 12): partial refunds, and each customer's current subscription on their row

A payment can be refunded in parts: `payment_refunds` holds every refund (staff request, provider id, amount,
outcome) and `payments.refunded_minor` their succeeded total. Payments refunded before this revision were refunded
whole: they get refunded_minor = amount_minor and one succeeded refund row dated at their refunded_at, so the
dashboard's revenue keeps subtracting them.

The customers table filters by the status of each customer's current subscription (the one ending last, pending
checkouts aside). Computing that per row made the status filters slow on a large shop, so `users` carries it:
current_subscription_id, current_status, current_ends_at, current_is_trial, indexed by status and creation time.
Triggers on `subscriptions` keep them right on every insert, delete and change of owner, status, end date or
trial flag — whichever code (or hand-written SQL) makes it — on PostgreSQL and SQLite alike.

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


# The current subscription of user `{uid}`: what app/admin/users/queries.py's "current" always meant.
CURRENT = (
    "SELECT s.id, s.status, s.ends_at, s.is_trial FROM subscriptions s"
    " WHERE s.user_id = {uid} AND s.status <> 'pending' ORDER BY s.ends_at DESC, s.id DESC LIMIT 1"
)
# A row-valued subquery with no row sets every column to NULL (a customer without a subscription).
REFRESH = (
    "UPDATE users SET (current_subscription_id, current_status, current_ends_at, current_is_trial) = ("
    + CURRENT
    + ") WHERE id = {uid}"
)
WATCHED = "user_id, status, ends_at, is_trial"

POSTGRESQL_UP = (
    "CREATE FUNCTION users_refresh_current(uid BIGINT) RETURNS void LANGUAGE sql AS $$ "
    + REFRESH.format(uid="uid")
    + " $$",
    """CREATE FUNCTION subscriptions_keep_current() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM users_refresh_current(OLD.user_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.user_id <> OLD.user_id) THEN
        PERFORM users_refresh_current(NEW.user_id);
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER subscriptions_keep_current AFTER INSERT OR DELETE OR UPDATE OF "
    + WATCHED
    + " ON subscriptions FOR EACH ROW EXECUTE FUNCTION subscriptions_keep_current()",
)
POSTGRESQL_DOWN = (
    "DROP TRIGGER IF EXISTS subscriptions_keep_current ON subscriptions",
    "DROP FUNCTION IF EXISTS subscriptions_keep_current()",
    "DROP FUNCTION IF EXISTS users_refresh_current(BIGINT)",
)
SQLITE_UP = (
    "CREATE TRIGGER subscriptions_current_insert AFTER INSERT ON subscriptions BEGIN "
    + REFRESH.format(uid="NEW.user_id")
    + "; END",
    "CREATE TRIGGER subscriptions_current_delete AFTER DELETE ON subscriptions BEGIN "
    + REFRESH.format(uid="OLD.user_id")
    + "; END",
    "CREATE TRIGGER subscriptions_current_update AFTER UPDATE OF "
    + WATCHED
    + " ON subscriptions BEGIN "
    + REFRESH.format(uid="OLD.user_id")
    + "; "
    + REFRESH.format(uid="NEW.user_id")
    + "; END",
)
SQLITE_DOWN = tuple(f"DROP TRIGGER IF EXISTS subscriptions_current_{event}" for event in ("insert", "delete", "update"))


def upgrade() -> None:
    _refunds()
    _customer_status()


def _customer_status() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("users", sa.Column("current_subscription_id", BigId, nullable=True))
    op.add_column("users", sa.Column("current_status", sa.String(length=32), nullable=True))
    op.add_column("users", sa.Column("current_ends_at", app.models.base.UTCDateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("current_is_trial", sa.Boolean(), nullable=True))
    op.create_index("ix_users_current_status_created_at", "users", ["current_status", "created_at", "id"], unique=False)
    for statement in SQLITE_UP if sqlite else POSTGRESQL_UP:
        op.execute(statement)
    op.execute(REFRESH.format(uid="users.id").replace("WHERE id = users.id", ""))


def _refunds() -> None:
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
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else POSTGRESQL_DOWN:
        op.execute(statement)
    op.drop_index("ix_users_current_status_created_at", table_name="users")
    for column in ("current_is_trial", "current_ends_at", "current_status", "current_subscription_id"):
        op.drop_column("users", column)
    op.drop_index("ix_payment_refunds_succeeded_at", table_name="payment_refunds")
    op.drop_index("ix_payment_refunds_payment_id", table_name="payment_refunds")
    op.drop_table("payment_refunds")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(CHECK), "payments", type_="check")
    op.drop_column("payments", "refunded_minor")
