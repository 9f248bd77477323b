"""expiry reminders, broadcast leases and counts, sending/unknown delivery states

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_DELIVERY_STATES = ("pending", "sent", "failed", "skipped")
NEW_DELIVERY_STATES = ("pending", "sending", "sent", "failed", "skipped", "unknown")
# (table, enum name) of the two columns holding a delivery state; each enum is a VARCHAR with a CHECK.
DELIVERY_COLUMNS = (("notifications", "notification_status"), ("broadcast_deliveries", "delivery_status"))


def _delivery_states(states: tuple[str, ...]) -> None:
    for table, name in DELIVERY_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
            batch_op.create_check_constraint(name, sa.column("status").in_(states))


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_reminder_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_reminder_for", app.models.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "button", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("unknown", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", app.models.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        # The defaults only filled existing rows; the model supplies the value from now on.
        batch_op.alter_column("skipped", server_default=None)
        batch_op.alter_column("unknown", server_default=None)
    _delivery_states(NEW_DELIVERY_STATES)


def downgrade() -> None:
    op.execute("UPDATE notifications SET status = 'failed' WHERE status IN ('sending', 'unknown')")
    op.execute("UPDATE broadcast_deliveries SET status = 'failed' WHERE status IN ('sending', 'unknown')")
    _delivery_states(OLD_DELIVERY_STATES)
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("unknown")
        batch_op.drop_column("skipped")
        batch_op.drop_column("button")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("last_reminder_for")
        batch_op.drop_column("last_reminder_days")
