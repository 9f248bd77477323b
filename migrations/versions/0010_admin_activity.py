"""admin section: daily activity and rollups (issue 12)

The activity record, the daily rollup, dated exchange rates, and the indexes the dashboard and the payments list
need on existing tables.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 03:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base
import app.models.stats

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# (name, table, columns, partial-index condition) of the indexes on other areas' tables (declared in
# app/models/stats.py).
INDEXES = (
    ("ix_users_last_seen_at", "users", ["last_seen_at"], None),
    ("ix_vpn_accounts_online_at", "vpn_accounts", ["online_at"], None),
    ("ix_usage_daily_day_user_id", "usage_daily", ["day", "user_id"], "upload_bytes + download_bytes > 0"),
    ("ix_subscriptions_failed_renewal", "subscriptions", ["ends_at"], "renewal_failures > 0"),
    ("ix_payments_paid_at", "payments", ["paid_at"], None),
    ("ix_payments_refunded_at", "payments", ["refunded_at"], None),
    ("ix_payments_created_at_id", "payments", ["created_at", "id"], None),
    ("ix_payments_amount_minor_id", "payments", ["amount_minor", "id"], None),
)


def upgrade() -> None:
    op.create_table(
        "user_activity_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_activity_days_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("day", "user_id", name=op.f("pk_user_activity_days")),
    )
    op.create_index("ix_user_activity_days_user_id", "user_activity_days", ["user_id"], unique=False)
    op.create_table(
        "daily_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("new_users", sa.Integer(), nullable=False),
        sa.Column("app_dau", sa.Integer(), nullable=False),
        sa.Column("vpn_dau", sa.Integer(), nullable=False),
        sa.Column("app_mau", sa.Integer(), nullable=False),
        sa.Column("vpn_mau", sa.Integer(), nullable=False),
        sa.Column("live_trial", sa.Integer(), nullable=False),
        sa.Column("live_paid", sa.Integer(), nullable=False),
        sa.Column("computed_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_daily_stats")),
    )
    op.create_table(
        "daily_revenue",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "currency", name=op.f("pk_daily_revenue")),
    )
    op.create_table(
        "exchange_rates",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("quote_currency", sa.String(length=8), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("rate", app.models.stats.DecimalText(), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_rates")),
        sa.UniqueConstraint(
            "currency",
            "quote_currency",
            "valid_from",
            name=op.f("uq_exchange_rates_currency_quote_currency_valid_from"),
        ),
    )
    for name, table, columns, where in INDEXES:
        condition = {} if where is None else {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)}
        op.create_index(name, table, columns, unique=False, **condition)


def downgrade() -> None:
    for name, table, _columns, _where in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("exchange_rates")
    op.drop_table("daily_revenue")
    op.drop_table("daily_stats")
    op.drop_index("ix_user_activity_days_user_id", table_name="user_activity_days")
    op.drop_table("user_activity_days")
