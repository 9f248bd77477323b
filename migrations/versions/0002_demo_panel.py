"""demo panel: accounts, HWID devices and node states of the built-in panel

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 08:31:50.368326
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "demo_panel_accounts",
        sa.Column("server_name", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("vless_uuid", sa.String(length=36), nullable=False),
        sa.Column("short_id", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "disabled",
                "limited",
                "expired",
                name="demo_account_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("expire_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("traffic_limit_bytes", sa.BigInteger(), nullable=True),
        sa.Column("used_traffic_bytes", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_traffic_bytes", sa.BigInteger(), nullable=False),
        sa.Column("device_limit", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("online_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sub_updated_at", app.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sub_last_user_agent", sa.String(length=255), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("updated_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "device_limit IS NULL OR device_limit > 0", name=op.f("ck_demo_panel_accounts_positive_device_limit")
        ),
        sa.CheckConstraint(
            "traffic_limit_bytes IS NULL OR traffic_limit_bytes > 0",
            name=op.f("ck_demo_panel_accounts_positive_traffic_limit"),
        ),
        sa.CheckConstraint(
            "used_traffic_bytes >= 0 AND lifetime_traffic_bytes >= used_traffic_bytes",
            name=op.f("ck_demo_panel_accounts_sane_traffic"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_panel_accounts")),
        sa.UniqueConstraint("server_name", "username", name=op.f("uq_demo_panel_accounts_server_name_username")),
        sa.UniqueConstraint("short_id", name=op.f("uq_demo_panel_accounts_short_id")),
        sa.UniqueConstraint("vless_uuid", name=op.f("uq_demo_panel_accounts_vless_uuid")),
    )
    op.create_index("ix_demo_panel_accounts_server_name_id", "demo_panel_accounts", ["server_name", "id"])

    op.create_table(
        "demo_panel_nodes",
        sa.Column("server_name", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("is_online", sa.Boolean(), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("updated_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_panel_nodes")),
        sa.UniqueConstraint("server_name", "name", name=op.f("uq_demo_panel_nodes_server_name_name")),
    )
    op.create_table(
        "demo_panel_devices",
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hwid", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=True),
        sa.Column("os_version", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("updated_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["demo_panel_accounts.id"],
            name=op.f("fk_demo_panel_devices_account_id_demo_panel_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_demo_panel_devices")),
        sa.UniqueConstraint("account_id", "hwid", name=op.f("uq_demo_panel_devices_account_id_hwid")),
    )


def downgrade() -> None:
    op.drop_table("demo_panel_devices")
    op.drop_table("demo_panel_nodes")
    op.drop_index("ix_demo_panel_accounts_server_name_id", table_name="demo_panel_accounts")
    op.drop_table("demo_panel_accounts")
