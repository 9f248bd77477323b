"""customers: the currency they chose to see and pay in (issue 20 item 8)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null: never chosen, so the shop picks by the customer's language (app/payments/pricing.py).
    op.add_column("users", sa.Column("currency", sa.String(length=8), nullable=True))


def downgrade() -> None:
    # Not a batch: rebuilding `users` on SQLite would break the triggers of migration 0011 that name it; SQLite
    # (3.35+) drops a plain column itself.
    op.drop_column("users", "currency")
