"""finance rollup: daily revenue per plan, provider and method; stored monthly figures and daily MRR

daily_revenue gains plan, provider and method in its key, and daily_checkouts counts the payments created each
day and how many succeeded, so the finance page reads finished days instead of grouping every payment of two years
on each load. Its rows are a rollup: they are dropped with the daily_stats
rows, and the worker's next run backfills the year (app/stats/rollup.py starts from the first customer when no day
is stored). finance_months and mrr_days hold what app/stats/finance.py computes from the whole paid history.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = app.models.base.JsonType


def _daily_revenue(*key: sa.Column) -> None:
    op.create_table(
        "daily_revenue",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        *key,
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "currency", *(column.name for column in key), name=op.f("pk_daily_revenue")),
    )


def _recompute_the_rollup() -> None:
    op.drop_table("daily_revenue")
    op.execute("DELETE FROM daily_stats")


def upgrade() -> None:
    _recompute_the_rollup()
    _daily_revenue(
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("plan_id", BigId, nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
    )
    op.create_table(
        "daily_checkouts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("is_renewal", sa.Boolean(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "provider", "method", "is_renewal", name=op.f("pk_daily_checkouts")),
    )
    op.create_table(
        "finance_months",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("new_mrr", Json, nullable=False),
        sa.Column("renewed", sa.Integer(), nullable=False),
        sa.Column("renewed_mrr", Json, nullable=False),
        sa.Column("paying_at_start", sa.Integer(), nullable=False),
        sa.Column("churned", sa.Integer(), nullable=False),
        sa.Column("churned_mrr", Json, nullable=False),
        sa.Column("trials_started", sa.Integer(), nullable=False),
        sa.Column("trials_converted", sa.Integer(), nullable=False),
        sa.Column("cohort_size", sa.Integer(), nullable=False),
        sa.Column("cohort_retained", Json, nullable=False),
        sa.Column("computed_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_finance_months")),
    )
    op.create_table(
        "mrr_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("by_currency", Json, nullable=False),
        sa.Column("paying", sa.Integer(), nullable=False),
        sa.Column("computed_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_mrr_days")),
    )


def downgrade() -> None:
    op.drop_table("mrr_days")
    op.drop_table("finance_months")
    op.drop_table("daily_checkouts")
    _recompute_the_rollup()
    _daily_revenue()
