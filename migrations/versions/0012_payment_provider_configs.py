"""admin section: payment providers set up in the admin (issue 13)

One row per provider changed in the admin: on/off, credentials (encrypted), options, and a revision every
process's payment registry watches to rebuild its providers without a restart.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 07:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.base

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = app.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payment_provider_configs",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=True),
        sa.Column("secrets_encrypted", sa.Text(), nullable=True),
        sa.Column(
            "options", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_provider_configs")),
        sa.UniqueConstraint("name", name=op.f("uq_payment_provider_configs_name")),
    )


def downgrade() -> None:
    op.drop_table("payment_provider_configs")
