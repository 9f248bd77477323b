"""an Excel export can also go to the staff member's Telegram

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_files") as batch:
        batch.add_column(sa.Column("telegram_chat_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("sent_to_telegram_at", app.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_files") as batch:
        batch.drop_column("sent_to_telegram_at")
        batch.drop_column("telegram_chat_id")
